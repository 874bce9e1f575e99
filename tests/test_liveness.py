"""The heartbeat files by which a sweep judges SLURM jobs where sacct cannot (svhn_sweep/sweep/liveness.py); the
jobs that never beat are judged by squeue, on a real cluster in tests/test_slurm.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from svhn_sweep.sweep.liveness import HEARTBEAT_FILE, TrialHeartbeat, Watch, beating, repeating
from svhn_sweep.sweep.retries import retried_attempt
from svhn_sweep.sweep.study import StudyRef


def test_a_watch_waits_for_the_first_beat_then_times_the_silence_since_the_last_change(tmp_path: Path) -> None:
    path = tmp_path / HEARTBEAT_FILE
    watch = Watch(path, stale_after=0.25, find_job=lambda: None)
    time.sleep(0.3)
    assert watch.silent_for() is None and watch.lost() is None  # not started, no job to ask about: waited for
    path.write_text("1.0\n")
    assert watch.silent_for() < 0.1 and watch.lost() is None
    time.sleep(0.3)
    assert watch.silent_for() >= 0.3  # unchanged: silent since it was seen
    assert watch.lost() == "no heartbeat for 0 s"  # past stale_after (rounded to whole seconds)
    path.write_text("2.0\n")
    assert watch.silent_for() < 0.1 and watch.lost() is None  # a beat resets it
    path.unlink()
    time.sleep(0.3)
    assert watch.silent_for() >= 0.3  # a file that went away is silence, not "not started"


def test_a_job_beats_while_it_runs_and_stops_with_the_block(tmp_path: Path) -> None:
    path = tmp_path / HEARTBEAT_FILE
    watch = Watch(path, stale_after=10, find_job=lambda: None)
    with beating(tmp_path, 0.05):
        time.sleep(0.3)
        assert float(path.read_text()) > 0  # the time of the last beat
        assert watch.silent_for() is not None
        time.sleep(0.2)
        assert watch.silent_for() < 0.2  # still changing
    time.sleep(0.3)
    assert watch.silent_for() >= 0.3  # stopped with the block


def test_a_failed_beat_is_said_and_the_next_one_tried(caplog) -> None:
    beats: list[float] = []

    def beat() -> None:
        beats.append(time.monotonic())
        if len(beats) <= 2:
            raise OSError("No space left on device")

    with repeating(0.05, beat, "job-heartbeat"):
        time.sleep(0.5)
    assert len(beats) >= 5  # went on beating after two failures
    assert caplog.text.count("job-heartbeat: a beat failed (OSError('No space left on device'))") == 2


def test_a_sweepers_stale_check_spares_its_own_trials_however_late_their_last_beat(tmp_path: Path) -> None:
    # The heartbeat thread can be held up past grace_period (a job stopped while it held the SQLite lock did so in
    # CI): the trials this sweeper runs are still alive, and failing one would retry a config that is training.
    ref = StudyRef(f"sqlite:///{tmp_path / 'study.db'}", "study")
    storage = ref.open_storage(heartbeat_interval=60, grace_period=1)
    study = optuna.create_study(storage=storage, study_name=ref.study_name)
    ours, theirs = study.ask(), study.ask()
    for trial in (ours, theirs):
        trial.suggest_float("lr", 1e-3, 1e-1, log=True)
    TrialHeartbeat(storage, study, [ours, theirs], interval=60).beat()
    time.sleep(2.5)  # both silent past grace_period (SQLite times heartbeats to the second)

    TrialHeartbeat(storage, study, [ours], interval=60).fail_stale_trials()

    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.RUNNING, TrialState.FAIL, TrialState.WAITING]
    assert retried_attempt(trials[2]) == theirs.number and trials[2].params == trials[1].params
