"""The end of a sweep: compose the best trial's config, retrain it and score it on the test file, once."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from svhn_sweep.results import trials_table
from svhn_sweep.study import STUDY_FILE, StudyRef, study_lock
from svhn_sweep.task import retrain_and_test

log = logging.getLogger(__name__)

FINAL_CLAIM = "final_retrain_for"


def best_trial_overrides(config: DictConfig, best_params: dict[str, Any]) -> list[str]:
    """The command line's fixed overrides plus the best trial's parameters: exactly that trial's config."""
    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    return fixed + [f"{name}={value}" for name, value in best_params.items()]


class RetrainBest(Callback):
    """Hydra callback: after ``--multirun``, print the trials and retrain the best config on test, once.

    Several workers of one study each end their own sweep; only the first to finish a given set of trials
    retrains (a claim on the study under its lock), so the test set is scored once per result.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Hydra calls this also when the sweep failed or was interrupted: then summarise, never retrain."""
        sweep_dir = Path(config.hydra.sweep.dir)
        if not (sweep_dir / STUDY_FILE).exists():
            return  # stopped before the study existed; the sweeper's error says why
        ref = StudyRef.from_sweep_dir(sweep_dir)
        study = ref.load()
        print(f"\nTrials of study {ref.study_name} (best first; all of its trials, across resumes and workers):")
        print(trials_table(study).drop(columns=["run_dir"]).head(config.final.top_k).to_string(index=False))
        finished = (sweep_dir / "optimization_results.yaml").exists()  # written only when the sweep completes
        if not (finished and config.final.enabled and self._claim(ref, study, sweep_dir)):
            return
        overrides = best_trial_overrides(config, study.best_trial.params)
        log.info("Retraining the best config (trial %d): %s", study.best_trial.number, " ".join(overrides))
        best_cfg = compose(config_name=config.hydra.job.config_name, overrides=overrides)
        metrics = retrain_and_test(best_cfg, sweep_dir / "final")
        OmegaConf.save(best_cfg, sweep_dir / "final" / "config.yaml")
        print(f"\nBest config (trial {study.best_trial.number}, val accuracy {study.best_value:.4f}) retrained on "
              f"{metrics['trained_on']} ({metrics['train_size']} images) and scored once on the test file "
              f"({metrics['test_size']} images): test accuracy {metrics['test_accuracy']:.4f}")

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
