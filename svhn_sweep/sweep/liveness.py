"""Whether a SLURM job still runs, where SLURM's accounting cannot say (issue 18).

submitit learns that a job ended without a result from ``sacct``. On a cluster without accounting (no slurmdbd,
or slurmdbd down) its polls fail ("Bypassing sacct error") and a job that was cancelled, preempted or lost with its
node is never seen to end: the sweeper would wait for it forever. There each job rewrites ``heartbeat`` in its run
folder every ``sweep.heartbeat`` seconds, and the sweeper judges a job whose file has not changed for
``hydra.sweeper.grace_period`` seconds lost: its trial is interrupted and retried, and the job is cancelled, so
that it cannot come back beside its retry. Changes are timed on the sweeper's clock (a file's modification time
only has to differ), so the nodes' clocks need not agree with it. A job that has not started (pending in the
queue) has no file yet and is waited for, as long as ``squeue``, which asks the controller and not accounting,
still lists it.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

HEARTBEAT_FILE = "heartbeat"


def sacct_error() -> str | None:
    """Why ``sacct`` cannot report on jobs from here (its own message), or None where it can."""
    try:
        result = subprocess.run(
            ["sacct", "-n", "-X", "-o", "JobID", "-j", "1"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if result.returncode == 0:
        return None
    return result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit status {result.returncode}"


@contextlib.contextmanager
def repeating(interval: float, action: Callable[[], None], name: str) -> Iterator[None]:
    """Call ``action`` now and then every ``interval`` seconds, from a thread of its own, while the block runs:
    a heartbeat that a long epoch or a blocked launch does not hold up.
    """
    stop = threading.Event()

    def loop() -> None:
        while True:
            action()
            if stop.wait(interval):
                return

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def beating(folder: Path, interval: float) -> contextlib.AbstractContextManager[None]:
    """The job's side: rewrite ``folder/heartbeat`` (the time, for a person who looks) every ``interval`` s while
    the block runs.
    """
    path = folder / HEARTBEAT_FILE
    return repeating(interval, lambda: path.write_text(f"{time.time():.3f}\n"), "job-heartbeat")


class Watch:
    """The sweeper's side, for one job: lost when its heartbeat file has gone unchanged for ``stale_after`` s (on
    this process's clock), or, before it ever beat, when SLURM no longer has it queued (cancelled or failed while
    pending) on two checks ``stale_after`` s apart. ``find_job`` names its SLURM job id once it was submitted.
    """

    def __init__(self, path: Path, stale_after: float, find_job: Callable[[], str | None]) -> None:
        self.path, self.stale_after, self._find_job = path, stale_after, find_job
        self._seen: tuple[int, int] | None = None  # the file's (mtime_ns, size) at the last change seen
        self._changed_at = self._checked_at = time.monotonic()
        self._job: str | None = None
        self._gone_once = False

    def silent_for(self) -> float | None:
        """Seconds since the file last changed; None while the job has not beaten at all (not started yet)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None if self._seen is None else time.monotonic() - self._changed_at
        now = (stat.st_mtime_ns, stat.st_size)
        if now != self._seen:
            self._seen, self._changed_at = now, time.monotonic()
        return time.monotonic() - self._changed_at

    def lost(self) -> str | None:
        """Why the job counts as lost, or None while it may still run or start."""
        silent = self.silent_for()
        if silent is not None:
            return f"no heartbeat for {silent:.0f} s" if silent > self.stale_after else None
        if time.monotonic() - self._checked_at < self.stale_after:
            return None
        self._checked_at = time.monotonic()
        self._job = self._job or self._find_job()
        gone = self._job is not None and queued(self._job) is False
        if gone and self._gone_once:
            return "it left the queue before it started"
        self._gone_once = gone
        return None

    def cancel(self) -> None:
        """Cancel the job, so that a job judged lost cannot come back beside its retry."""
        job = self._job or self._find_job()
        if job is None:
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["scancel", job], capture_output=True, timeout=60, check=False)
            log.info("Cancelled SLURM job %s, judged lost", job)


# The states in which squeue still shows a job that will never run (again); any other is pending or running.
ENDED = frozenset(
    {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT"}
)


def queued(job: str) -> bool | None:
    """Whether SLURM still has ``job`` pending or running (squeue talks to the controller, not to accounting);
    None when squeue cannot say.
    """
    try:
        result = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:  # a job the controller forgot (MinJobAge after its end) is an invalid id
        return False if "Invalid job id" in result.stderr else None
    states = result.stdout.split()
    return bool(states) and not set(states) <= ENDED


def submitted_job(submitit_dir: Path, job_idx: int) -> str | None:
    """The SLURM job id of Hydra's job ``job_idx`` (a trial's number), read from the submission submitit saved in
    ``submitit_dir`` (``<job id>/<job id>_submitted.pkl`` with the default ``%j`` folders; its arguments:
    overrides, sweep-dir key, job index, ...); None until it is there.
    """
    for submitted in submitit_dir.rglob("*_submitted.pkl"):
        try:
            delayed = pickle.loads(submitted.read_bytes())
        except (EOFError, pickle.UnpicklingError):  # being written
            continue
        if delayed.args[2] == job_idx:
            return submitted.name.removesuffix("_submitted.pkl")
    return None
