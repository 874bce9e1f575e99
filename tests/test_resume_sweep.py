"""A sweep stopped at random moments (kill -9, SIGTERM) and resumed each time by the same command ends as the same
sweep never stopped: the same configs with the same values, the same best trial, the same test accuracy
(issue 18, item 4; issue 17, item 5).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from svhn_sweep.sweep.retries import evaluated
from tests.conftest import run_cli, run_folder, start_cli

# 3 trials of 4 epochs and a final retrain of 3; stale trials found within seconds, so a restart retries them at once.
ARGS = [
    "--multirun",
    "trainer.epochs=4",
    "final.epochs=3",
    "hydra.sweeper.n_trials=3",
    "hydra.sweeper.enqueue=[]",
    "hydra.sweeper.study_name=stopped",
    "hydra.sweeper.heartbeat_interval=1",
    "hydra.sweeper.grace_period=3",
]


def outcome(cwd: Path) -> tuple[list[tuple], dict]:
    """The configs the study evaluated, in order, with their states and values; the final step's result."""
    study = optuna.load_study(study_name="stopped", storage=f"sqlite:///{cwd / 'outputs' / 'optuna.db'}")
    trials = [t for t in study.get_trials(deepcopy=False) if evaluated(t)]
    configs = [(tuple(sorted(t.params.items())), t.state.name, t.values) for t in trials]
    result = study.user_attrs["final"]
    return configs, {key: result[key] for key in ("test_accuracy", "epochs")} | {
        "trial_params": next(c[0] for c, t in zip(configs, trials, strict=True) if t.number == result["trial"])
    }


def trial_epochs_trained(cwd: Path) -> int:
    """Epochs the trials trained in all: each finished trial's own (not those it restored from a checkpoint),
    and each interrupted attempt's completed epochs (those it reported).
    """
    study = optuna.load_study(study_name="stopped", storage=f"sqlite:///{cwd / 'outputs' / 'optuna.db'}")
    total = 0
    for trial in study.get_trials(deepcopy=False):
        if evaluated(trial):
            record = json.loads((run_folder(study, trial) / "metrics.json").read_text())
            total += record["epochs"] - record["resumed_epochs"]
        else:
            total += len(trial.intermediate_values)
    return total


@pytest.mark.slow
def test_a_sweep_stopped_at_random_moments_ends_as_the_sweep_never_stopped(small_data, tmp_path: Path) -> None:
    once, stopped = tmp_path / "once", tmp_path / "stopped"
    once.mkdir(), stopped.mkdir()
    result = run_cli([*ARGS, *small_data], cwd=once)
    assert result.returncode == 0, result.stderr[-3000:]

    rng = random.Random(18)
    interruptions = 0
    for how in (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL):
        sweep = start_cli([*ARGS, *small_data], stopped, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(6, 14))  # the command starts in ~4 s; a trial of 4 epochs takes a few more
        if sweep.poll() is None:
            sweep.send_signal(how)
            interruptions += 1
        _, stderr = sweep.communicate(timeout=120)
        assert "Traceback" not in stderr, stderr[-3000:]
        time.sleep(1.1)  # a new sweep folder (they are named by the second)
    assert interruptions >= 2, "the sweep finished before it could be stopped: the test stopped nothing"
    result = run_cli([*ARGS, *small_data], cwd=stopped)
    assert result.returncode == 0, result.stderr[-3000:]

    assert outcome(stopped) == outcome(once)
    study = optuna.load_study(study_name="stopped", storage=f"sqlite:///{stopped / 'outputs' / 'optuna.db'}")
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) >= 1
    # What the stops cost: completed epochs trained again, at most one per stop (one run in flight at a time here).
    assert trial_epochs_trained(stopped) <= trial_epochs_trained(once) + interruptions
