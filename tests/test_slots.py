"""The asynchronous slots on their own: which launchers take one job per call from several threads, a slot refilled
while another still runs, a launch that fails, and the workers ended on an interrupt (real processes).

The sweeps that use them, with the real joblib and submitit launchers, are in ``test_async_sweep.py``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence

import psutil
import pytest
from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher

from svhn_sweep.sweep.slots import Slots, runs_jobs_apart


class ProcessLauncher(Launcher):
    """A launcher that runs each job as a process of its own: ``sleep=S`` sleeps S seconds, ``fail`` raises."""

    def setup(self, **_: object) -> None:
        pass

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        returns = []
        for idx, overrides in enumerate(job_overrides, initial_job_idx):
            options = dict(o.split("=") for o in overrides)
            if "fail" in options:
                raise RuntimeError(f"launcher broke on job {idx}")
            seconds = float(options["sleep"])
            done = subprocess.run([sys.executable, "-c", f"import time; time.sleep({seconds})"], check=False)
            ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=done.returncode)
            returns.append(ret)
        return returns


def test_the_launchers_that_run_jobs_apart_take_slots_and_the_basic_one_does_not() -> None:
    assert all(runs_jobs_apart(launcher) for launcher in (JoblibLauncher(), LocalLauncher(), SlurmLauncher()))
    assert not runs_jobs_apart(BasicLauncher())


def test_a_free_slot_takes_the_next_job_while_the_other_still_runs() -> None:
    slots: Slots[str] = Slots(ProcessLauncher(), 2)
    with slots:
        slots.start(0, "long", ["sleep=3"], job_idx=0)
        slots.start(1, "short", ["sleep=0"], job_idx=1)
        assert slots.free() == [] and set(slots.running.values()) == {"long", "short"}
        finished = []
        for later in ("next", "last"):  # the short jobs run one after the other in slot 1, beside the long one
            slot, item, ret = slots.wait()
            assert (slot, ret.return_value) == (1, 0) and slots.free() == [1]
            finished.append(item)
            slots.start(1, later, ["sleep=0"], job_idx=len(finished) + 1)
        while slots.running:
            finished.append(slots.wait()[1])
    assert finished[:2] == ["short", "next"] and finished.index("long") > 1  # the long job did not hold slot 1
    with pytest.raises(ValueError, match="slot 0 is not free"):
        slots.start(0, "a", ["sleep=1"], 0)
        slots.start(0, "b", ["sleep=1"], 1)


def test_a_launch_that_raises_is_raised_by_wait_and_its_job_still_counts_as_in_flight() -> None:
    slots: Slots[str] = Slots(ProcessLauncher(), 1)
    slots.start(0, "broken", ["fail=1"], job_idx=7)
    with pytest.raises(RuntimeError, match="launcher broke on job 7"):
        slots.wait()
    assert list(slots.running.values()) == ["broken"]  # for the sweeper to mark it interrupted


def test_an_interrupt_ends_the_workers_the_launcher_started_and_nothing_older() -> None:
    older = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        before = {p.pid for p in psutil.Process().children()}  # the older process among them
        slots: Slots[str] = Slots(ProcessLauncher(), 2)
        with pytest.raises(KeyboardInterrupt), slots:
            slots.start(0, "a", ["sleep=60"], job_idx=0)
            slots.start(1, "b", ["sleep=60"], job_idx=1)
            deadline = time.monotonic() + 30
            while len({p.pid for p in psutil.Process().children()} - before) < 2:  # both jobs' processes are up
                assert time.monotonic() < deadline
                time.sleep(0.05)
            raise KeyboardInterrupt
        assert {p.pid for p in psutil.Process().children()} == before and older.poll() is None
        # each slot's launch returned once its process ended: nothing runs on behind the sweeper
        assert sorted(slots.wait()[1] for _ in range(2)) == ["a", "b"] and not slots.running
    finally:
        older.kill()
        older.wait()
