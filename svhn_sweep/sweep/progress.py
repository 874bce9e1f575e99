"""One line per finished trial while a sweep runs: how far it is, what is in flight, the best so far, and how long it
still needs, e.g. ``Trial 7 PRUNED val_accuracy 0.5120 | 8 of 20 finished, 2 in flight | best 0.7931 (trial 4) |
3m12s elapsed, about 4m05s left``.

The counts are the study's, so a resumed sweep or one shared by several workers counts every trial already there;
"in flight" is the study's RUNNING trials when the line is written (this command's slots and other workers').
The time left is the work left divided by the trials that run at once: each trial not started yet costs the mean
duration of the finished ones (pruned and failed included, so pruning shortens the estimate), and each trial in
flight the part of that mean it has not run yet. The final retrain comes after and is not included.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from svhn_sweep.sweep.retries import evaluated


def duration(seconds: float) -> str:
    """``3m05s``, ``1h02m``, ``42s``: short enough for a log line."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def seconds_left(trials: Sequence[FrozenTrial], total: int, parallel: int, now: datetime) -> float | None:
    """Estimated seconds until ``total`` trials are finished, ``parallel`` at a time; None before any finished."""
    durations = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if evaluated(t) and t.datetime_start and t.datetime_complete
    ]
    if not durations:
        return None
    mean = sum(durations) / len(durations)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    not_started = max(0, total - sum(evaluated(t) for t in trials) - len(running))
    in_flight = sum(max(0.0, mean - (now - t.datetime_start).total_seconds()) for t in running if t.datetime_start)
    return (not_started * mean + in_flight) / max(1, parallel, len(running))


def best_so_far(trials: Sequence[FrozenTrial], direction: StudyDirection) -> FrozenTrial | None:
    """The best complete trial by its (first) objective; None while no trial is complete."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    pick = max if direction == StudyDirection.MAXIMIZE else min
    return pick(complete, key=lambda t: t.values[0], default=None)


def progress_line(
    trials: Sequence[FrozenTrial],
    number: int,
    total: int,
    parallel: int,
    elapsed: float,
    now: datetime,
    direction: StudyDirection = StudyDirection.MAXIMIZE,
) -> str:
    """The line for trial ``number`` of the study's ``trials``, just finished; see the module docstring."""
    trial = next(t for t in trials if t.number == number)
    value = f"{trial.values[0]:.4f}" if trial.values else "-"
    finished = sum(evaluated(t) for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    best = best_so_far(trials, direction)
    left = seconds_left(trials, total, parallel, now)
    timing = f"{duration(elapsed)} elapsed"
    if finished >= total:
        timing += ", all trials done"
    elif left is not None:
        timing += f", about {duration(left)} left"
    best_part = f"best {best.values[0]:.4f} (trial {best.number})" if best else "no complete trial yet"
    return " | ".join(
        [
            f"Trial {number} {trial.state.name} val_accuracy {value}",
            f"{finished} of {total} finished" + (f", {running} in flight" if running else ""),
            best_part,
            timing,
        ]
    )


class SweepProgress:
    """The sweeper's progress reporter: made when the sweep starts (the clock starts), asked after each tell."""

    def __init__(self, total: int, parallel: int) -> None:
        self.total = total
        self.parallel = parallel
        self.started = time.monotonic()

    def line(self, study: optuna.Study, number: int) -> str:
        """The progress line for trial ``number``, which the sweeper has just told the study."""
        return progress_line(
            study.get_trials(deepcopy=False),
            number,
            self.total,
            self.parallel,
            time.monotonic() - self.started,
            datetime.now(),
            study.directions[0],
        )
