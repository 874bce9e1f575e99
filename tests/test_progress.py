"""The line per finished trial (counts, best so far, time left) and the switch that quiets the per-epoch lines."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from svhn_sweep.sweep.progress import SweepProgress, duration, progress_line, seconds_left
from svhn_sweep.sweep.trial import train_and_validate
from tests.conftest import Sweep

NOW = datetime(2026, 11, 28, 9, 0, 0)


def trial(number: int, state: TrialState, seconds: float, value: float | None = None, why: str = "") -> FrozenTrial:
    """A trial that started ``seconds`` before NOW (RUNNING) or took ``seconds`` and ended at NOW; ``why`` it
    failed (stale trials have no reason).
    """
    start = NOW - timedelta(seconds=seconds)
    complete = None if state == TrialState.RUNNING else NOW
    attrs = {"fail_reason": why} if why else {}
    return FrozenTrial(number, state, value, start, complete, {}, {}, attrs, {}, {}, number)


# 0: 60 s, 1: 30 s (pruned), 2: 90 s, 3: 60 s (crashed): the mean of the finished is 60 s; 4 runs since 20 s.
TRIALS = [
    trial(0, TrialState.COMPLETE, 60, 0.5),
    trial(1, TrialState.PRUNED, 30, 0.3),
    trial(2, TrialState.COMPLETE, 90, 0.7),
    trial(3, TrialState.FAIL, 60, why="error: RuntimeError: boom"),
    trial(4, TrialState.RUNNING, 20),
]


def test_the_line_counts_the_study_names_the_best_and_estimates_the_time_left() -> None:
    # 10 in total: 5 not started at 60 s each, plus the 40 s trial 4 still needs on average, one at a time.
    assert seconds_left(TRIALS, total=10, parallel=1, now=NOW) == 5 * 60 + 40
    assert progress_line(TRIALS, 3, total=10, parallel=1, elapsed=245, now=NOW) == (
        "Trial 3 FAIL val_accuracy - | 4 of 10 finished, 1 in flight | best 0.7000 (trial 2) | 4m05s elapsed, "
        "about 5m40s left"
    )
    line = progress_line(TRIALS, 1, total=10, parallel=4, elapsed=10, now=NOW)  # 4 trials at a time
    assert line.startswith("Trial 1 PRUNED val_accuracy 0.3000 |") and line.endswith("10s elapsed, about 1m25s left")


def test_interrupted_trials_count_neither_as_finished_nor_in_the_mean() -> None:
    """Ctrl-C'd and stale trials evaluated nothing: their retries will; their short run times say nothing."""
    interrupted = [trial(5, TrialState.FAIL, 1, why="interrupted: SIGINT"), trial(6, TrialState.FAIL, 2)]
    line = progress_line([*TRIALS, *interrupted], 5, total=10, parallel=1, elapsed=245, now=NOW)
    assert line == (
        "Trial 5 FAIL val_accuracy - | 4 of 10 finished, 1 in flight | best 0.7000 (trial 2) | 4m05s elapsed, "
        "about 5m40s left"
    )


def test_trials_in_flight_beyond_the_mean_and_other_workers_count_too() -> None:
    running = [trial(5, TrialState.RUNNING, 300), trial(6, TrialState.RUNNING, 10)]
    # trial 5 is past the mean (nothing left of it), trial 6 needs 50 s; 3 running trials share the work
    assert seconds_left([*TRIALS, *running], total=10, parallel=1, now=NOW) == pytest.approx((3 * 60 + 40 + 50) / 3)


def test_minimising_studies_no_complete_trial_and_the_last_trial() -> None:
    assert progress_line(TRIALS, 0, 10, 1, 1, NOW, StudyDirection.MINIMIZE).split(" | ")[2] == "best 0.5000 (trial 0)"
    assert progress_line(TRIALS[1:2], 1, 10, 1, 1, NOW).split(" | ")[2] == "no complete trial yet"
    done = progress_line(TRIALS[:4], 3, total=4, parallel=1, elapsed=3700, now=NOW)
    assert done.endswith("4 of 4 finished | best 0.7000 (trial 2) | 1h01m elapsed, all trials done")


def test_durations_are_short() -> None:
    assert [duration(s) for s in (0, 42.4, 60, 185, 3599, 3600, 7385)] == [
        "0s",
        "42s",
        "1m00s",
        "3m05s",
        "59m59s",
        "1h00m",
        "2h03m",
    ]


def test_a_resumed_study_counts_the_trials_already_there() -> None:
    study = optuna.create_study(direction="maximize")
    space = {"x": FloatDistribution(0, 1)}
    for value in (0.2, 0.9, 0.4):  # finished by an earlier run of the same command
        study.add_trial(optuna.trial.create_trial(params={"x": value}, distributions=space, value=value))
    progress = SweepProgress(total=5, parallel=1)
    new = study.ask(space)
    study.tell(new, 0.5)
    line = progress.line(study, new.number)
    assert re.fullmatch(
        r"Trial 3 COMPLETE val_accuracy 0\.5000 \| 4 of 5 finished \| best 0\.9000 \(trial 1\) \| \d+s elapsed, "
        r"about \d+s left",
        line,
    ), line


@pytest.mark.slow
def test_a_sweep_prints_a_line_per_finished_trial(sweep: Sweep) -> None:
    lines = [line for line in sweep.stdout.splitlines() if " finished | " in line]
    assert [re.search(r"(\d+) of 4 finished", line).group(1) for line in lines] == ["1", "2", "3", "4"]
    assert all(re.search(r"Trial \d (COMPLETE|PRUNED|FAIL) val_accuracy", line) for line in lines)
    assert " left" in lines[0] and lines[-1].endswith("all trials done")


def test_quiet_sends_the_epoch_lines_to_debug(compose_cfg, small_data, tmp_path: Path, caplog) -> None:
    def epoch_records(*overrides: str) -> list[int]:
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="svhn_sweep.core.train"):
            train_and_validate(compose_cfg(*small_data, "trainer.epochs=2", *overrides), tmp_path)
        return [r.levelno for r in caplog.records if r.getMessage().startswith("epoch ")]

    assert epoch_records() == [logging.INFO, logging.INFO]
    assert epoch_records("trainer.quiet=true") == [logging.DEBUG, logging.DEBUG]
