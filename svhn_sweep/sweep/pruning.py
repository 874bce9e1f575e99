"""The job's side of pruning: report val accuracy to the sweep's trial each epoch, stop when told to; a resumed
trial first reports the epochs its checkpoint restored, so the pruner sees the whole curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import optuna
from omegaconf import DictConfig

from svhn_sweep.core.train import EpochStats
from svhn_sweep.sweep.config import build
from svhn_sweep.sweep.retries import why_ended
from svhn_sweep.sweep.study import StudyRef


@dataclass(frozen=True)
class StoppedEarly:
    """A trial's expected early end, returned (not raised) so the sweeper records it without an error."""

    state: str  # "pruned" | "diverged" | "orphaned"
    reason: str


class TrialEndedElsewhere(Exception):
    """The job's trial was ended while the job still ran: a worker's stale check took it for dead (its heartbeat
    held up past ``grace_period``), or its sweeper was interrupted and left it running (a SLURM job), and a retry of
    it is enqueued. The job stops at its next report and leaves its checkpoint to that retry.
    """


@lru_cache(maxsize=4)
def _storage(ref: StudyRef) -> optuna.storages.RDBStorage:
    """Opened once per process: a new one (engine, schema check) costs about half a second, every trial."""
    return ref.open_storage()


@dataclass(frozen=True)
class TrialReporter:
    """Called with each epoch's stats: reports its val accuracy and raises ``optuna.TrialPruned`` when the pruner
    says so. The pruner is not asked after the last of ``epochs``: a trial that trained all its epochs is COMPLETE,
    and stopping it then would save nothing.
    """

    trial: optuna.Trial
    storage: optuna.storages.BaseStorage
    trial_id: int
    epochs: int

    def __call__(self, stats: EpochStats) -> None:
        """Report an epoch just trained; raise ``optuna.TrialPruned`` if the pruner stops the trial here."""
        self._report(stats)
        if stats.epoch < self.epochs and self.trial.should_prune():
            raise optuna.TrialPruned(f"val_acc {stats.val_acc:.4f} at epoch {stats.epoch} is behind other trials")

    def restored(self, history: list[EpochStats]) -> None:
        """Report epochs a checkpoint restored, without asking the pruner: it let each of them go on when it was
        trained. Steps the trial has already (a requeued job continuing its own trial) are left as they are; a
        retried trial, a new one, gets them all.
        """
        reported = self.storage.get_trial(self.trial_id).intermediate_values
        for stats in history:
            if stats.epoch not in reported:
                self._report(stats)

    def _report(self, stats: EpochStats) -> None:
        try:
            self.trial.report(stats.val_acc, stats.epoch)
        except optuna.exceptions.UpdateFinishedTrialError:
            ended = self.storage.get_trial(self.trial_id)
            raise TrialEndedElsewhere(
                f"trial {ended.number} was ended while this job ran ({why_ended(ended)})"
            ) from None


def trial_reporter(sweep: DictConfig, epochs: int) -> TrialReporter | None:
    """None outside a sweep; otherwise the reporter of the trial ``sweep.trial``."""
    if sweep.trial is None:
        return None
    ref = StudyRef(sweep.storage, sweep.study)
    pruner = optuna.pruners.NopPruner() if sweep.pruner in (None, "none") else build(sweep.pruner)
    storage = _storage(ref)
    study = optuna.load_study(study_name=ref.study_name, storage=storage, pruner=pruner)
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(ref.study_name), sweep.trial
    )
    return TrialReporter(optuna.Trial(study, trial_id), storage, trial_id, epochs)
