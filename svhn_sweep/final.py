"""The end of a ``--multirun``: the final step (the best config retrained and scored on test, once), then the
sweep folder's review: ``trials.csv``, the figures and the summary of ``svhn-sweep-report``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from svhn_sweep.constants import RESULTS_FILE, STUDY_FILE, TRIALS_CSV
from svhn_sweep.review.plots import write_plots
from svhn_sweep.review.results import trials_table
from svhn_sweep.review.summary import summary
from svhn_sweep.sweep.retrain import claim_final_step, release_final_step, retrain_best
from svhn_sweep.sweep.study import StudyRef

log = logging.getLogger(__name__)


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
        finished = (sweep_dir / RESULTS_FILE).exists()  # written only when the sweep completes
        try:
            ref = StudyRef.from_sweep_dir(sweep_dir)
            study = ref.load()
            trials = trials_table(study)
            trials.to_csv(sweep_dir / TRIALS_CSV, index=False)
            if finished and config.final.enabled and claim_final_step(ref, study, sweep_dir):
                try:
                    retrain_best(config, study, sweep_dir)
                except Exception:
                    release_final_step(study)
                    raise
            if finished:
                write_plots(sweep_dir, study)
            print("\n" + summary(study, trials, sweep_dir, config.final.top_k))
        except Exception:
            if not finished:
                raise
            log.exception(
                "The end of the sweep failed; its trials are kept in the study (svhn-sweep-report %s shows them)",
                sweep_dir,
            )
            raise SystemExit(1) from None
