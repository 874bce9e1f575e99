"""What a search is made of and how its trials are read: pruning's last epoch, the row order of the tables."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from svhn_sweep.core.train import EpochStats
from svhn_sweep.review.results import trials_table
from svhn_sweep.sweep.pruning import trial_reporter

LR = {"optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True)}


def epoch(number: int, val_acc: float) -> EpochStats:
    return EpochStats(number, 1.0, 0.5, val_acc, 0.01, 1.0)


def test_the_pruner_is_never_asked_after_the_last_epoch(tmp_path: Path) -> None:
    """A pruner that prunes everything (a threshold no accuracy reaches) stops a trial before its last epoch, and
    never at it: a trial that trained all its epochs is COMPLETE.
    """
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    pruner = {"_target_": "optuna.pruners.ThresholdPruner", "lower": 1.1}
    study.ask(LR), study.ask(LR)
    sweep = {"pruner": pruner, "study": "s", "storage": storage}
    early = trial_reporter(OmegaConf.create({**sweep, "trial": 0}), epochs=3)
    with pytest.raises(optuna.TrialPruned, match="at epoch 2"):
        early(epoch(2, 0.5))
    last = trial_reporter(OmegaConf.create({**sweep, "trial": 1}), epochs=3)
    last(epoch(3, 0.5))  # reported, not judged
    assert study.trials[1].intermediate_values == {3: 0.5}


def test_complete_trials_come_first_then_pruned_then_the_rest_best_first(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}", direction="maximize")
    for state, value in [
        (TrialState.COMPLETE, 0.5),
        (TrialState.PRUNED, 0.9),  # stopped early: its accuracy is not a finished trial's
        (TrialState.FAIL, None),
        (TrialState.COMPLETE, 0.7),
        (TrialState.PRUNED, 0.95),
    ]:
        study.add_trial(
            create_trial(
                state=state, value=value, params={"optimizer.lr": 0.01}, distributions=LR, intermediate_values={1: 0.1}
            )
        )
    table = trials_table(study)
    assert table["trial"].tolist() == [3, 0, 4, 1, 2]
    assert table["state"].tolist() == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED", "FAIL"]
