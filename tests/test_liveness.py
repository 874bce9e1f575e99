"""The heartbeat files by which a sweep judges SLURM jobs where sacct cannot (svhn_sweep/sweep/liveness.py)."""

from __future__ import annotations

import time
from pathlib import Path

from svhn_sweep.sweep.liveness import HEARTBEAT_FILE, Watch, beating


def test_a_watch_waits_for_the_first_beat_then_times_the_silence_since_the_last_change(tmp_path: Path) -> None:
    path = tmp_path / HEARTBEAT_FILE
    watch = Watch(path)
    time.sleep(0.2)
    assert watch.silent_for() is None  # not started: waited for, however long
    path.write_text("123 1.0\n")
    assert watch.silent_for() < 0.1
    time.sleep(0.3)
    assert watch.silent_for() >= 0.3  # unchanged: silent since it was seen
    path.write_text("123 2.0\n")
    assert watch.silent_for() < 0.1  # a beat resets it
    path.unlink()
    time.sleep(0.2)
    assert watch.silent_for() >= 0.2  # a file that went away is silence, not "not started"


def test_a_job_beats_while_it_runs_and_names_its_slurm_job(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "4711")
    path = tmp_path / HEARTBEAT_FILE
    watch = Watch(path)
    with beating(tmp_path, 0.05):
        time.sleep(0.3)
        assert path.read_text().split()[0] == "4711"
        assert watch.silent_for() is not None
        time.sleep(0.2)
        assert watch.silent_for() < 0.2  # still changing
    time.sleep(0.3)
    assert watch.silent_for() >= 0.3  # stopped with the block
