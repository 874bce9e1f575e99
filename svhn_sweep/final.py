"""The end of a sweep: the final step (the best config retrained and scored on test, once per finished set of
trials), then the sweep folder's review: ``trials.csv``, the figures and the summary of ``svhn-sweep-report``.

Two ways in: the :class:`RetrainBest` callback at the end of every ``--multirun``, and ``svhn-sweep-final
SWEEP_DIR [OVERRIDE...]`` (``python -m svhn_sweep.final``), which redoes the final step of an existing sweep
from its study, after a failure or on purpose with overrides, into a new folder beside the first.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra import initialize_config_dir
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.utils import execution_whitelist
from omegaconf import DictConfig, OmegaConf

from svhn_sweep.constants import FINAL_DIR, METRICS_FILE, MULTIRUN_FILE, RESULTS_FILE, STUDY_FILE, TRIALS_CSV
from svhn_sweep.core.errors import UserError
from svhn_sweep.review.plots import write_plots
from svhn_sweep.review.results import trials_table
from svhn_sweep.review.summary import final_line, summary
from svhn_sweep.sweep.config import CONFIG_DIR, TRUSTED_TARGETS, register_configs
from svhn_sweep.sweep.interrupts import exit_status, terminating_signals_interrupt
from svhn_sweep.sweep.retrain import final_step
from svhn_sweep.sweep.study import StudyRef

log = logging.getLogger(__name__)


class RetrainBest(Callback):
    """Hydra callback: after ``--multirun``, retrain the best config on test, once; write ``trials.csv`` and the
    figures into the sweep folder and print the trials.

    Several workers of one study each end their own sweep; one does the final step for a given set of trials
    (the study's lease, :mod:`svhn_sweep.sweep.lease`) and the others wait for its result, or take over if it dies.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Hydra calls this also when the sweep failed or was interrupted: then summarise, never retrain.

        Hydra turns an exception raised here into a warning, so a failed retrain or figure after a finished
        sweep ends the command with ``SystemExit(1)`` instead; after an unfinished sweep the sweep's own error
        is the one that counts, and Hydra's warning is enough. An interrupt passes through as it is.
        """
        sweep_dir = Path(config.hydra.sweep.dir)
        if not (sweep_dir / STUDY_FILE).exists():
            return  # stopped before the study existed; the sweeper's error says why
        finished = (sweep_dir / RESULTS_FILE).exists()  # written only when the sweep completes
        try:
            ref = StudyRef.from_sweep_dir(sweep_dir)
            study = ref.load()
            trials = trials_table(study, sweep_dir)
            trials.to_csv(sweep_dir / TRIALS_CSV, index=False)
            if finished and config.final.enabled:
                final_step(config, ref, study, sweep_dir / FINAL_DIR)
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


def next_final_dir(sweep_dir: Path) -> Path:
    """``final``, else ``final-2``, ``final-3``, ...: the first that holds no finished result, never one that does."""
    names = (FINAL_DIR if n == 1 else f"{FINAL_DIR}-{n}" for n in itertools.count(1))
    return next(sweep_dir / name for name in names if not (sweep_dir / name / METRICS_FILE).exists())


def primary_config_dir(config: DictConfig) -> str:
    """The folder the sweep's primary config came from (``--config-dir`` included), else the package's own."""
    for source in config.hydra.runtime.config_sources:
        if source.provider == "main" and source.schema == "file":
            return str(source.path)
    return CONFIG_DIR


def redo_final_step(sweep_dir: Path, overrides: Sequence[str]) -> tuple[dict[str, Any], Path, optuna.Study]:
    """Retrain the best trial of the sweep's study (with ``overrides``) into a new final folder of ``sweep_dir``;
    its metrics, the folder and the study.
    """
    ref = StudyRef.from_sweep_dir(sweep_dir)
    multirun = sweep_dir / MULTIRUN_FILE
    if not multirun.exists():
        raise UserError(f"{multirun} not found: {sweep_dir} was written by an svhn_sweep older than this command.")
    config = OmegaConf.load(multirun)
    study = ref.load()
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise UserError(f"Study {ref.study_name} has no complete trial yet, so there is no best config to retrain.")
    final_dir = next_final_dir(sweep_dir)
    register_configs()
    with initialize_config_dir(config_dir=primary_config_dir(config)), execution_whitelist(TRUSTED_TARGETS):
        metrics = final_step(config, ref, study, final_dir, overrides, redo=True)
    assert metrics is not None  # redo never finds the step already done
    return metrics, final_dir, study


def parser() -> argparse.ArgumentParser:
    """The command line of ``svhn-sweep-final``."""
    cli = argparse.ArgumentParser(
        prog="svhn-sweep-final",
        description="Redo the final step of a sweep from its study: retrain the best trial's config (with any "
        "overrides) and score it once on the test file, into a new folder beside the first.",
    )
    cli.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR", help="a sweep folder, outputs/sweeps/<date_time>")
    cli.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="Hydra overrides, e.g. trainer.epochs=30")
    return cli


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: a mistake ends it with one line and exit status 1; a signal with 128 + its number."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    recorded = False
    try:
        with terminating_signals_interrupt():
            metrics, final_dir, study = redo_final_step(args.sweep_dir, args.overrides)
            recorded = True
            print(final_line(metrics, trials_table(study, args.sweep_dir), args.sweep_dir, final_dir))
            write_plots(args.sweep_dir, study)  # the sweep folder's figures show the study's final step: this one
    except (UserError, HydraException, FileNotFoundError, KeyError) as error:
        sys.exit(f"svhn-sweep-final: {error}")
    except KeyboardInterrupt as interrupt:
        done = f"the final step is recorded; svhn-sweep-report {args.sweep_dir} --plots draws the figures"
        print(
            f"Interrupted; {done if recorded else 'nothing was recorded. Run the same command again'}.", file=sys.stderr
        )
        sys.exit(exit_status(interrupt))


if __name__ == "__main__":
    main()
