"""The heartbeat files by which a sweep judges SLURM jobs where sacct cannot (svhn_sweep/sweep/liveness.py); the
jobs that never beat are judged by squeue, on a real cluster in tests/test_slurm.py.
"""

from __future__ import annotations

import time
from pathlib import Path

from svhn_sweep.sweep.liveness import HEARTBEAT_FILE, Watch, beating


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
