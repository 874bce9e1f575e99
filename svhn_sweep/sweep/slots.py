"""Asynchronous slots: ``n`` jobs in flight, each slot refilled as soon as its job is done (issue 19).

Hydra's ``Launcher.launch`` takes a batch and returns when all of its jobs are done (hydra#3091, #3201), so a sweep
that hands it ``n_jobs`` trials at a time waits for the slowest of each batch. Here each slot runs one job at a
time by calling the launcher's public ``launch([its job], initial_job_idx=trial number)`` from a thread of its
own; the caller (the sweeper, in the main thread) waits for the first slot to finish, tells Optuna, asks for the
next trial and starts it in that slot: Optuna's own ``optimize(n_jobs)`` loop, with Hydra's launchers doing the
work. Everything a job is in Hydra stays as it is (composed config, run folder ``<sweep dir>/<job idx>``,
``.hydra/``, callbacks, ``JobReturn``), because the launcher's own code runs it.

That needs a launcher whose ``launch`` may run concurrently and whose jobs run outside the sweeper's process; what
one call does was read for each (hydra-joblib-launcher and hydra-submitit-launcher 1.4.0rc3):

- joblib: ``setup_globals`` (idempotent), ``configure_log`` (``logging.config`` holds its module lock), the sweep
  folder made with ``exist_ok``, a copy of the launcher's joblib settings, then ``joblib.Parallel`` over the job.
  Calls with the same settings share loky's reusable executor (submission is locked; joblib reuses it when the
  settings match), so worker processes and what they hold are reused across trials: a worker that finishes a
  trial takes the next, and ``svhn_sweep.core.data``'s per-process cache keeps the data in it.
- submitit (local and SLURM): a fresh executor per call, one job submitted (its folder named by the job id), its
  result awaited. The job index is the argument, never shared state.

The basic launcher runs jobs in the calling process and sets process-wide state (``HydraConfig``), and Ctrl-C must
stop its training, which only the main thread sees: it keeps the batch loop, as does any launcher not known here
(:func:`runs_jobs_apart`).

A slot's thread blocks inside ``launch``, where nothing can stop it from outside; on Ctrl-C, SIGTERM or an error,
:meth:`Slots.stop` ends the processes the launcher started (this process's children that appeared since the slots
were made, with their own children), after which the threads' ``launch`` calls return with an error. SLURM jobs
run elsewhere and are not cancelled (nor were they by the batch loop): their trials are marked interrupted,
and each job stops at its next epoch when it finds its trial ended (``svhn_sweep.sweep.pruning``).

A job is lost when its scheduler says so (submitit raises; :func:`lost_job_state`) or, when it was started with a
:class:`~svhn_sweep.sweep.liveness.Watch` (SLURM without accounting), when the watch says so: its slot is given up
(the thread stays blocked in ``launch``; what it returns is dropped) and the job cancelled.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import psutil
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher

from svhn_sweep.sweep.liveness import Watch

log = logging.getLogger(__name__)

T = TypeVar("T")

# Launchers (or their bases) whose launch() may be called from several threads at once, each job in a process of
# its own; matched by name, so that neither plugin is imported to check.
CONCURRENT_LAUNCHERS = frozenset(
    {
        "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
        "hydra_plugins.hydra_submitit_launcher.submitit_launcher.BaseSubmititLauncher",
    }
)
SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
STOP_GRACE_S = 5.0  # how long a stopped worker gets between SIGTERM and SIGKILL
# submitit's word for a job the scheduler ended without a result: "... has not produced any output (state: X)".
LOST_STATE = re.compile(r"\(state: ([A-Z_]+)")


class LostJobError(Exception):
    """A job that its scheduler ended without a result (cancelled, preempted without a requeue, out of time past
    its requeues, its node lost): its trial was stopped from outside, the sweep goes on. Its slot is free again.
    """

    def __init__(self, item: object, state: str) -> None:
        super().__init__(f"its job was lost ({state})")
        self.item, self.state = item, state


def lost_job_state(error: BaseException) -> str | None:
    """The scheduler's state of a job that ``error`` (from a submitit launcher's ``launch``) says was lost, or None
    for any other error. Matched by name, so that submitit is imported only where it is used.
    """
    kind = f"{type(error).__module__}.{type(error).__name__}"
    if not kind.startswith("submitit."):
        return None
    if type(error).__name__ == "UncompletedJobError":
        return match.group(1) if (match := LOST_STATE.search(str(error))) else "UNKNOWN"
    if type(error).__name__ == "FailedJobError" and "timed-out too many times" in str(error):
        return "TIMEOUT"  # requeued max_num_timeout times and out of time again
    return None


def _is_one_of(launcher: Launcher, classes: frozenset[str]) -> bool:
    """Whether ``launcher``'s class or one of its bases is named in ``classes`` (so that no plugin is imported)."""
    return any(f"{c.__module__}.{c.__qualname__}" in classes for c in type(launcher).__mro__)


def on_slurm(launcher: Launcher) -> bool:
    """Whether ``launcher`` submits its jobs to SLURM (hydra-submitit-launcher's ``hydra/launcher=slurm``)."""
    return _is_one_of(launcher, frozenset({SLURM_LAUNCHER}))


def runs_jobs_apart(launcher: Launcher) -> bool:
    """Whether ``launcher`` runs each job outside this process and may be called from several threads."""
    return _is_one_of(launcher, CONCURRENT_LAUNCHERS)


@dataclass(frozen=True)
class _Done(Generic[T]):
    slot: int
    start: int  # which start of the slot it ends: a slot given up and started again drops its old job's end
    item: T
    result: JobReturn | None
    error: BaseException | None


class Slots(Generic[T]):
    """``size`` slots, each running at most one job (tagged with an ``item``, e.g. its trial) through ``launcher``.

    Used from one thread (the sweeper's): :meth:`start` a job in a :meth:`free` slot, :meth:`wait` for the next one
    done. As a context manager, an exception (Ctrl-C, SIGTERM, an error) stops the workers on the way out.
    """

    def __init__(self, launcher: Launcher, size: int) -> None:
        self._launcher = launcher
        self.size = size
        # What runs where: the items in flight, a live view for whoever must account for them (heartbeats, the
        # trials told on an interrupt).
        self.running: dict[int, T] = {}
        self._done: queue.SimpleQueue[_Done[T]] = queue.SimpleQueue()
        self._starts = itertools.count(1)  # numbers each start, over all slots
        self._current: dict[int, int] = {}  # the start each busy slot runs
        self._watches: dict[int, Watch] = {}
        self._before = {child.pid for child in psutil.Process().children(recursive=True)}

    def __enter__(self) -> Slots[T]:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: object) -> None:
        if error is not None and self.running:
            self.stop()

    def free(self) -> list[int]:
        """The slots with no job, lowest first (a slot's index picks the device: ``sweep.slot``)."""
        return [slot for slot in range(self.size) if slot not in self.running]

    def start(self, slot: int, item: T, overrides: Sequence[str], job_idx: int, watch: Watch | None = None) -> None:
        """Launch one job with ``overrides`` as job ``job_idx`` (its run folder) in the free ``slot``; ``watch``
        judges whether it was lost where its scheduler cannot say.
        """
        if slot in self.running or not 0 <= slot < self.size:
            raise ValueError(f"slot {slot} is not free (running: {sorted(self.running)}, size {self.size})")
        self.running[slot] = item
        self._current[slot] = start = next(self._starts)
        if watch is not None:
            self._watches[slot] = watch
        thread = threading.Thread(
            target=self._run, args=(slot, start, item, list(overrides), job_idx), name=f"slot-{slot}", daemon=True
        )
        thread.start()

    def _run(self, slot: int, start: int, item: T, overrides: list[str], job_idx: int) -> None:
        try:
            (result,) = self._launcher.launch([overrides], initial_job_idx=job_idx)
        except BaseException as error:  # handed to the sweeper's thread, which decides
            self._done.put(_Done(slot, start, item, None, error))
        else:
            self._done.put(_Done(slot, start, item, result, None))

    def wait(self) -> tuple[int, T, JobReturn]:
        """The next job done: its slot (free again), its item and its ``JobReturn``.

        A job its scheduler lost, or its watch judged lost, raises :class:`LostJobError`, its slot free again; any
        other ``launch`` that raised is raised here, its item still counted as running (it did not finish).
        """
        if not self.running:
            raise RuntimeError("no job in flight")
        while True:
            try:  # a timeout, so that a signal's handler runs at once on every platform
                done = self._done.get(timeout=1.0)
            except queue.Empty:
                self._give_up_lost()
                continue
            if self._current.get(done.slot) == done.start:
                break  # else the end of a job given up since: dropped
        if done.error is not None:
            if (state := lost_job_state(done.error)) is None:
                raise done.error
            self._release(done.slot)
            raise LostJobError(done.item, state) from done.error
        self._release(done.slot)
        assert done.result is not None
        return done.slot, done.item, done.result

    def _give_up_lost(self) -> None:
        """Raise :class:`LostJobError` for the first job its watch judges lost, its slot freed, the job cancelled."""
        for slot, watch in list(self._watches.items()):
            if (why := watch.lost()) is not None:
                item = self.running[slot]
                self._release(slot)
                watch.cancel()
                raise LostJobError(item, why)

    def _release(self, slot: int) -> None:
        del self.running[slot], self._current[slot]
        self._watches.pop(slot, None)

    def stop(self) -> None:
        """End the worker processes the launcher started since the slots were made (and their children):
        SIGTERM, then SIGKILL after :data:`STOP_GRACE_S` seconds. The slots' ``launch`` calls then return.
        """
        workers = [p for p in psutil.Process().children(recursive=True) if p.pid not in self._before and _worker(p)]
        for process in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.terminate()
        _, alive = psutil.wait_procs(workers, timeout=STOP_GRACE_S)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        if workers:
            log.info("Stopped %d worker process(es) of the trials in flight", len(workers))


def _worker(process: psutil.Process) -> bool:
    """Not one of the resource trackers that multiprocessing and loky keep for the whole process: they hold no
    trial, end with this process, and one ended early is restarted with a warning and a traceback.
    """
    try:
        return not any("resource_tracker" in part for part in process.cmdline())
    except psutil.Error:
        return False
