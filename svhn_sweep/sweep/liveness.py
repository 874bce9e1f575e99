"""Whether a trial's job still runs: SLURM jobs where SLURM's accounting cannot say (issue 18), and trials in the
study.

submitit learns that a job ended without a result from ``sacct``. On a cluster without accounting (no slurmdbd,
or slurmdbd down) its polls fail ("Bypassing sacct error") and a job that was cancelled, preempted or lost with its
node is never seen to end: the sweeper would wait for it forever. There each job rewrites ``heartbeat`` in its run
folder every ``sweep.heartbeat`` seconds, and the sweeper judges a job whose file has not changed for
``hydra.sweeper.grace_period`` seconds lost: its trial is interrupted and retried, and the job is cancelled, so
that it cannot come back beside its retry. Changes are timed on the sweeper's clock (a file's modification time
only has to differ), so the nodes' clocks need not agree with it. A job that has not started (pending in the
queue) has no file yet and is waited for, as long as ``squeue``, which asks the controller and not accounting,
still lists it.

The sweeper's own trials beat in the study as well (:class:`TrialHeartbeat`, Optuna's heartbeat): that is how
other workers, and the next command, tell a trial whose sweeper died from one in flight.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import subprocess
import threading
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import optuna

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
    a heartbeat that a long epoch or a blocked launch does not hold up, nor one failed beat (a database restarting,
    a full disk) stop.
    """
    stop = threading.Event()

    def loop() -> None:
        while True:
            try:
                action()
            except Exception as error:  # said each time, tried again at the next beat
                log.warning("%s: a beat failed (%r); trying again in %g s", name, error, interval)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class TrialHeartbeat:
    """Optuna's heartbeat for the trials this sweeper has in flight (``trials``, a live collection: the slots'),
    which a worker's stale check turns FAIL and retries once silent for the storage's ``grace_period``. Optuna
    beats only inside ``Study.optimize``; this ask-and-tell loop beats from a thread of its own.
    """

    def __init__(
        self,
        storage: optuna.storages.RDBStorage,
        study: optuna.Study,
        trials: Collection[optuna.Trial],
        interval: float,
    ) -> None:
        self._storage, self._study, self._trials, self.interval = storage, study, trials, interval
        self._study_id = storage.get_study_id_from_name(study.study_name)
        self._trial_ids: dict[int, int] = {}

    def beat(self, trials: Collection[optuna.Trial] | None = None) -> None:
        """Record a heartbeat for each trial in flight now (or for ``trials``)."""
        for number in [t.number for t in list(self._trials if trials is None else trials)]:
            if number not in self._trial_ids:
                self._trial_ids[number] = self._storage.get_trial_id_from_study_id_trial_number(self._study_id, number)
            self._storage.record_heartbeat(self._trial_ids[number])

    def running(self) -> contextlib.AbstractContextManager[None]:
        """Beat every ``interval`` seconds while the block runs."""
        return repeating(self.interval, self.beat, "optuna-heartbeat")

    def fail_stale_trials(self) -> None:
        """Optuna's stale check, with this sweeper's own trials beaten first: they are alive (their jobs are
        watched here) however long the heartbeat thread was held up (a database locked by a stopped job, a busy
        machine); only the trials of workers that stopped beating are stale.
        """
        self.beat()
        optuna.storages.fail_stale_trials(self._study)


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
