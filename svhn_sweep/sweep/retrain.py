"""The final step of a sweep: the best trial's config, retrained and scored on the test file, once per result."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from svhn_sweep.constants import (
    CONFIG_FILE,
    CONFIG_OVERRIDES_ATTR,
    METRICS_FILE,
    MODEL_FILE,
    OVERRIDES_ATTR,
    PREDICTIONS_FILE,
)
from svhn_sweep.core.data import Split
from svhn_sweep.core.evaluation import evaluate_model
from svhn_sweep.core.files import atomic_write, save_torch, write_json
from svhn_sweep.core.train import history_records, use_amp
from svhn_sweep.sweep.checkpoints import finished, run_checkpoints
from svhn_sweep.sweep.config import selection_margin
from svhn_sweep.sweep.lease import FinalStepLease
from svhn_sweep.sweep.loggers import record_final
from svhn_sweep.sweep.study import StudyRef
from svhn_sweep.sweep.training import fit_config, prepare

log = logging.getLogger(__name__)


def retrain_and_test(
    cfg: DictConfig, output_dir: Path, origin: dict[str, Any] | None = None, resume_dir: str | None = None
) -> dict[str, Any]:
    """Retrain a config (on train+val when ``final.train_on_val``) and score it on the test file, once.

    The test predictions are kept (``test_predictions.npz``, dataset order) so the error analysis never needs
    a second look at the test set through a retrain; ``origin`` (e.g. the trial retrained) goes into metrics.json.
    The retrain is checkpointed in ``output_dir`` and continues the checkpoint there, else ``resume_dir``'s.
    """
    start = time.perf_counter()
    source, device = prepare(cfg)
    train, val = source.train_val(cfg.seed)
    if cfg.final.train_on_val:
        train, val = Split.concat(train, val), None
    output_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = run_checkpoints(cfg, output_dir, resume_dir)
    model, history = fit_config(cfg, source, device, train, val, checkpoints=checkpoints)
    test = source.load("test").to(device)
    predictions, labels = evaluate_model(
        model, test, source.normalizer(device), cfg.trainer.eval_batch_size, use_amp(cfg.trainer.amp, device)
    )
    metrics = {
        **(origin or {}),
        "test_accuracy": float((predictions == labels).mean()),
        "val_accuracy": history[-1].val_acc,
        "trained_on": "train+val" if cfg.final.train_on_val else "train",
        "train_size": len(train),
        "test_size": len(test),
        "epochs": len(history),
        "duration_s": time.perf_counter() - start,
        "history": history_records(history),
    }
    save_torch(model.state_dict(), output_dir / MODEL_FILE)
    with atomic_write(output_dir / PREDICTIONS_FILE) as handle:
        np.savez(handle, predictions=predictions, labels=labels)
    write_json(output_dir / METRICS_FILE, metrics)
    finished(cfg, checkpoints)
    return metrics


def best_trial_overrides(config: DictConfig, best: optuna.trial.FrozenTrial) -> list[str]:
    """Exactly the trial's config: every override the sweeper composed it from (user attr ``config_overrides``:
    searched values, composed ones such as ``model.hidden_sizes=[512,64]`` from a hook's layer widths, fixed
    entries of the search space, the command line's).

    Trials of older studies recorded only their searched values (``overrides``) or their parameters: those get the
    command line's fixed overrides added.
    """
    if recorded := best.user_attrs.get(CONFIG_OVERRIDES_ATTR):
        return list(recorded)
    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    searched = best.user_attrs.get(OVERRIDES_ATTR) or [f"{name}={value}" for name, value in best.params.items()]
    return fixed + list(searched)


def without_group(overrides: Sequence[str], group: str) -> list[str]:
    """``overrides`` less those of ``group``: its choice and its keys (``scheduler=step``, ``scheduler.gamma=0.3``)."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return [o.input_line for o in parsed if o.key_or_group != group and not o.key_or_group.startswith(f"{group}.")]


def selected_trial(study: optuna.Study, select: str) -> optuna.trial.FrozenTrial:
    """The complete trial ``final.select`` names: ``best``, the highest val accuracy (the first of equals); or
    ``smallest_within:D``, the fewest parameters (second objective) among the trials within D of the best val
    accuracy, the better val accuracy between equals.
    """
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    top = max(t.values[0] for t in complete)
    margin = selection_margin(select)
    within = [t for t in complete if t.values[0] >= top - margin - 1e-12]
    if select == "best":
        return min(within, key=lambda t: t.number)
    return min(within, key=lambda t: (t.values[1], -t.values[0], t.number))


def retrain_best(
    config: DictConfig,
    study: optuna.Study,
    final_dir: Path,
    extra_overrides: Sequence[str] = (),
    resume_dir: str | None = None,
) -> dict[str, Any]:
    """Compose the config of the trial ``final.select`` names (plus ``extra_overrides``) in the running Hydra and
    retrain it into ``final_dir`` (continuing the checkpoint of an interrupted final step in ``resume_dir``, if it
    has the same config); its ``metrics.json`` is written last, so a folder that has one holds a whole result.
    """
    best = selected_trial(study, config.final.select)
    overrides = best_trial_overrides(config, best)
    if config.final.epochs is not None:  # the final step's own length; the trials keep trainer.epochs
        overrides.append(f"trainer.epochs={config.final.epochs}")
    if config.final.batch_size is not None:  # likewise its own batch size
        overrides.append(f"trainer.batch_size={config.final.batch_size}")
    if config.final.scheduler is not None:  # and its own schedule, in place of the trial's
        overrides = [*without_group(overrides, "scheduler"), f"scheduler={config.final.scheduler}"]
    overrides += extra_overrides
    log.info("Retraining the best config (trial %d): %s", best.number, " ".join(overrides))
    best_cfg = compose(config_name=config.hydra.job.config_name, overrides=overrides)
    # An absolute data root, from where the sweep ran, so that the saved config finds its test set from any folder.
    best_cfg.data.root = str(Path(config.hydra.runtime.cwd, best_cfg.data.root))
    final_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(final_dir / CONFIG_FILE) as handle:
        handle.write(OmegaConf.to_yaml(best_cfg).encode())
    origin = {"trial": best.number, "n_trials": len(study.trials), "select": config.final.select}
    metrics = retrain_and_test(best_cfg, final_dir, origin=origin, resume_dir=resume_dir)
    record_final(best_cfg, study.study_name, final_dir)
    return metrics


def final_step(
    config: DictConfig,
    ref: StudyRef,
    study: optuna.Study,
    final_dir: Path,
    extra_overrides: Sequence[str] = (),
    redo: bool = False,
) -> dict[str, Any] | None:
    """The final step, exactly once per finished set of trials: under the study's lease, recorded in the study.

    None when it was done already (by this or another worker, for the same trials); ``redo`` does it again on
    purpose (``svhn-sweep-final``). A final step stopped before its result (killed, or given back on a signal),
    in this sweep folder or another command's, is continued from its checkpoint when it retrained the same config.
    """
    sweeper = config.hydra.sweeper
    lease = FinalStepLease(ref, study, str(final_dir.resolve()), sweeper.heartbeat_interval, sweeper.grace_period)
    try:  # from the moment the lease may be ours, every way out (Ctrl-C and SIGTERM too) gives it back
        if not lease.acquire(redo):
            return None
        metrics = retrain_best(config, study, final_dir, extra_overrides, lease.unfinished)
        lease.record(
            {
                **{
                    key: metrics[key]
                    for key in ("test_accuracy", "trial", "select", "trained_on", "train_size", "test_size", "epochs")
                },
                # Recorded as run folders are (relative to an SQLite study's folder: a copied outputs/ finds
                # them); svhn_sweep.review.results.final_folder reads it back.
                "final_dir": ref.run_dir_attr(final_dir),
                "model": ref.run_dir_attr(final_dir / MODEL_FILE),
            }
        )
    finally:
        lease.release()
    return metrics
