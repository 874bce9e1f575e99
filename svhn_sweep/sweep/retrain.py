"""The final step of a sweep: the best trial's config, retrained and scored on the test file, once per result."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from svhn_sweep.constants import CONFIG_FILE, METRICS_FILE, MODEL_FILE, PREDICTIONS_FILE
from svhn_sweep.core.data import Split
from svhn_sweep.core.evaluation import evaluate_model
from svhn_sweep.core.files import atomic_write, write_json
from svhn_sweep.core.train import history_records, use_amp
from svhn_sweep.sweep.lease import FinalStepLease
from svhn_sweep.sweep.loggers import record_final
from svhn_sweep.sweep.study import StudyRef
from svhn_sweep.sweep.training import fit_config, prepare

log = logging.getLogger(__name__)


def retrain_and_test(cfg: DictConfig, output_dir: Path, origin: dict[str, Any] | None = None) -> dict[str, Any]:
    """Retrain a config (on train+val when ``final.train_on_val``) and score it on the test file, once.

    The test predictions are kept (``test_predictions.npz``, dataset order) so the error analysis never needs
    a second look at the test set through a retrain; ``origin`` (e.g. the trial retrained) goes into metrics.json.
    """
    start = time.perf_counter()
    source, device = prepare(cfg)
    train, val = source.train_val(cfg.seed)
    if cfg.final.train_on_val:
        train, val = Split.concat(train, val), None
    model, history = fit_config(cfg, source, device, train, val)
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
    output_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(output_dir / MODEL_FILE) as handle:
        torch.save(model.state_dict(), handle)
    with atomic_write(output_dir / PREDICTIONS_FILE) as handle:
        np.savez(handle, predictions=predictions, labels=labels)
    write_json(output_dir / METRICS_FILE, metrics)
    return metrics


def best_trial_overrides(config: DictConfig, best_params: dict[str, Any]) -> list[str]:
    """The command line's fixed overrides plus the best trial's parameters: exactly that trial's config."""
    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    return fixed + [f"{name}={value}" for name, value in best_params.items()]


def retrain_best(
    config: DictConfig, study: optuna.Study, final_dir: Path, extra_overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """Compose the best trial's config (plus ``extra_overrides``) in the running Hydra and retrain it into
    ``final_dir``; its ``metrics.json`` is written last, so a folder that has one holds a whole result.
    """
    best = study.best_trial
    overrides = [*best_trial_overrides(config, best.params), *extra_overrides]
    log.info("Retraining the best config (trial %d): %s", best.number, " ".join(overrides))
    best_cfg = compose(config_name=config.hydra.job.config_name, overrides=overrides)
    # An absolute data root, from where the sweep ran, so that the saved config finds its test set from any folder.
    best_cfg.data.root = str(Path(config.hydra.runtime.cwd, best_cfg.data.root))
    final_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(final_dir / CONFIG_FILE) as handle:
        handle.write(OmegaConf.to_yaml(best_cfg).encode())
    metrics = retrain_and_test(best_cfg, final_dir, origin={"trial": best.number, "n_trials": len(study.trials)})
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
    purpose (``svhn-sweep-final``).
    """
    sweeper = config.hydra.sweeper
    lease = FinalStepLease(ref, study, str(final_dir.resolve()), sweeper.heartbeat_interval, sweeper.grace_period)
    try:  # from the moment the lease may be ours, every way out (Ctrl-C and SIGTERM too) gives it back
        if not lease.acquire(redo):
            return None
        metrics = retrain_best(config, study, final_dir, extra_overrides)
        lease.record(
            {
                **{key: metrics[key] for key in ("test_accuracy", "trial", "trained_on", "train_size", "test_size")},
                "epochs": metrics["epochs"],
                "final_dir": str(final_dir.resolve()),
                "model": str((final_dir / MODEL_FILE).resolve()),
            }
        )
    finally:
        lease.release()
    return metrics
