"""The end of a sweep: compose the best trial's config, retrain it and score it on the test file, once; then
the sweep folder's review: ``trials.csv``, the figures and the summary of ``svhn-sweep-report``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from svhn_sweep.plots import write_plots
from svhn_sweep.report import summary
from svhn_sweep.results import trials_table
from svhn_sweep.study import STUDY_FILE, StudyRef, study_lock
from svhn_sweep.task import retrain_and_test

log = logging.getLogger(__name__)

FINAL_CLAIM = "final_retrain_for"
TRIALS_CSV = "trials.csv"


def best_trial_overrides(config: DictConfig, best_params: dict[str, Any]) -> list[str]:
    """The command line's fixed overrides plus the best trial's parameters: exactly that trial's config."""
    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    return fixed + [f"{name}={value}" for name, value in best_params.items()]


class RetrainBest(Callback):
    """Hydra callback: after ``--multirun``, retrain the best config on test, once; write ``trials.csv`` and the
    figures into the sweep folder and print the trials.

    Several workers of one study each end their own sweep; only the first to finish a given set of trials
    retrains (a claim on the study under its lock), so the test set is scored once per result.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Hydra calls this also when the sweep failed or was interrupted: then summarise, never retrain.

        Hydra turns an exception raised here into a warning, so a failed retrain or figure after a finished
        sweep ends the command with ``SystemExit(1)`` instead; after an unfinished sweep the sweep's own error
        is the one that counts, and Hydra's warning is enough.
        """
        sweep_dir = Path(config.hydra.sweep.dir)
        if not (sweep_dir / STUDY_FILE).exists():
            return  # stopped before the study existed; the sweeper's error says why
        finished = (sweep_dir / "optimization_results.yaml").exists()  # written only when the sweep completes
        try:
            ref = StudyRef.from_sweep_dir(sweep_dir)
            study = ref.load()
            trials = trials_table(study)
            trials.to_csv(sweep_dir / TRIALS_CSV, index=False)
            if finished and config.final.enabled and self._claim(ref, study, sweep_dir):
                try:
                    self._retrain(config, study, sweep_dir)
                except Exception:
                    study.set_user_attr(FINAL_CLAIM, None)  # give the claim back: the same command retries
                    raise
            if finished:
                write_plots(sweep_dir, study)
            print("\n" + summary(study, trials, sweep_dir, config.final.top_k))
        except Exception:
            if not finished:
                raise
            log.exception("The end of the sweep failed; its trials are kept in the study (svhn-sweep-report %s "
                          "shows them)", sweep_dir)
            raise SystemExit(1) from None

    @staticmethod
    def _retrain(config: DictConfig, study: Any, sweep_dir: Path) -> None:
        best = study.best_trial
        overrides = best_trial_overrides(config, best.params)
        log.info("Retraining the best config (trial %d): %s", best.number, " ".join(overrides))
        best_cfg = compose(config_name=config.hydra.job.config_name, overrides=overrides)
        # An absolute data root, so that the saved config finds its test set from any folder (the error gallery).
        best_cfg.data.root = to_absolute_path(best_cfg.data.root)
        retrain_and_test(best_cfg, sweep_dir / "final", origin={"trial": best.number, "n_trials": len(study.trials)})
        OmegaConf.save(best_cfg, sweep_dir / "final" / "config.yaml")

    @staticmethod
    def _claim(ref: StudyRef, study: Any, sweep_dir: Path) -> bool:
        n_trials = len(study.trials)
        with study_lock(ref.storage, ref.study_name):
            claim = study.user_attrs.get(FINAL_CLAIM)
            if claim and claim["n_trials"] == n_trials:
                log.info("The final retrain for these %d trials is done by %s", n_trials, claim["sweep_dir"])
                return False
            study.set_user_attr(FINAL_CLAIM, {"n_trials": n_trials, "sweep_dir": str(sweep_dir.resolve())})
        return True
