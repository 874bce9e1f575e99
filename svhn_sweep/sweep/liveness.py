"""Whether a SLURM job still runs, where SLURM's accounting cannot say (issue 18).

submitit learns that a job ended without a result from ``sacct``. On a cluster without accounting (no slurmdbd,
or slurmdbd down) its polls fail ("Bypassing sacct error") and a job that was cancelled, preempted or lost with its
node is never seen to end: the sweeper would wait for it forever. There each job touches ``heartbeat`` in its run
folder every ``sweep.heartbeat`` seconds, with its SLURM job id inside, and the sweeper judges a job whose file has
not changed for ``hydra.sweeper.grace_period`` seconds lost: its trial is interrupted and retried, and the job is
cancelled, so that it cannot come back beside its retry. Changes are timed on the sweeper's clock (a file's
modification time only has to differ), so the nodes' clocks need not agree with it. A job that has not started
(pending in the queue) has no file yet and is waited for, as SLURM would have it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

HEARTBEAT_FILE = "heartbeat"
# The environment variable that names the SLURM job a process runs in (an array's element has an id of its own).
SLURM_JOB_ID = "SLURM_JOB_ID"


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
    """The job's side: rewrite ``folder/heartbeat`` (its SLURM job id and the time inside) every ``interval`` s
    while the block runs.
    """
    path, job = folder / HEARTBEAT_FILE, os.environ.get(SLURM_JOB_ID, "")
    return repeating(interval, lambda: path.write_text(f"{job} {time.time():.3f}\n"), "job-heartbeat")


class Watch:
    """The sweeper's side, for one job: how long its heartbeat file has gone unchanged, on this process's clock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None  # the file's (mtime_ns, size) at the last change seen
        self._changed_at = time.monotonic()

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

    def cancel(self) -> None:
        """Cancel the job (named in its file), so that a job judged lost cannot come back beside its retry."""
        try:
            job = self.path.read_text().split()[0]
        except (OSError, IndexError):
            return
        if not job.replace("_", "").isdigit():  # a job id (12345, or an array's 12345_3); else not a SLURM job
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["scancel", job], capture_output=True, timeout=60, check=False)
            log.info("Cancelled SLURM job %s, judged lost", job)
