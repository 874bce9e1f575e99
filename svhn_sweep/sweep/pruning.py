"""The job's side of pruning: report val accuracy to the sweep's trial each epoch, stop when told to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import optuna
from omegaconf import DictConfig

from svhn_sweep.core.train import EpochStats
from svhn_sweep.sweep.config import build
from svhn_sweep.sweep.study import StudyRef


@dataclass(frozen=True)
class StoppedEarly:
    """A trial's expected early end, returned (not raised) so the sweeper records it without an error."""

    state: str  # "pruned" | "diverged"
    reason: str


@lru_cache(maxsize=4)
def _storage(ref: StudyRef) -> optuna.storages.RDBStorage:
    """Opened once per process: a new one (engine, schema check) costs about half a second, every trial."""
    return ref.open_storage()


def trial_reporter(sweep: DictConfig, epochs: int) -> Callable[[EpochStats], None] | None:
    """None outside a sweep; otherwise a callback that reports and raises ``optuna.TrialPruned``.

    The pruner is not asked after the last of ``epochs``: a trial that trained all its epochs is COMPLETE, and
    stopping it then would save nothing.
    """
    if sweep.trial is None:
        return None
    ref = StudyRef(sweep.storage, sweep.study)
    pruner = optuna.pruners.NopPruner() if sweep.pruner in (None, "none") else build(sweep.pruner)
    storage = _storage(ref)
    study = optuna.load_study(study_name=ref.study_name, storage=storage, pruner=pruner)
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(ref.study_name), sweep.trial
    )
    trial = optuna.Trial(study, trial_id)

    def report(stats: EpochStats) -> None:
        trial.report(stats.val_acc, stats.epoch)
        if stats.epoch < epochs and trial.should_prune():
            raise optuna.TrialPruned(f"val_acc {stats.val_acc:.4f} at epoch {stats.epoch} is behind other trials")

    return report
