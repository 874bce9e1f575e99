"""The final step's lease in the study: one holder per finished set of trials, taken over when its holder dies.

The study records two user attributes: ``final_lease`` (who is doing the final step for how many trials, with a
heartbeat) and ``final`` (the result, written only after the files it names are on disk). A holder gives the
lease back on every way out of Python (an exception, Ctrl-C, SIGTERM); one killed outright stops beating, and
after ``grace_period`` seconds of silence the next worker, or the same command run again, takes it over. So the
final step completes exactly once per set of trials, whatever interrupts it.

The holder is the final step's folder. A holder that gives the lease back without a result leaves its folder in
``final_unfinished``; whoever takes the lease next (from there, or from a holder that died) knows that folder as
:attr:`FinalStepLease.unfinished`, whose checkpoint the final step continues: the same command run again writes
a new sweep folder, and its final step would otherwise start again from epoch 1.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import optuna

from svhn_sweep.sweep.study import StudyRef, study_lock

log = logging.getLogger(__name__)

LEASE_ATTR = "final_lease"
RESULT_ATTR = "final"
UNFINISHED_ATTR = "final_unfinished"


class FinalStepLease:
    """``acquire()`` before the final step, ``release()`` in a ``finally`` after it (it beats in between), and
    :meth:`record` for the result.
    """

    def __init__(
        self, ref: StudyRef, study: optuna.Study, holder: str, heartbeat_interval: float, grace_period: float
    ) -> None:
        self.ref, self.study, self.holder = ref, study, holder
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.n_trials = len(study.trials)
        # Wall-clock heartbeats, compared across machines: keep their clocks in sync (NTP), as for Optuna's own.
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._recorded = False
        self.unfinished: str | None = None  # the folder of the last final step stopped before its result

    def acquire(self, redo: bool = False) -> bool:
        """Take the lease; False when the result for these trials is already recorded (unless ``redo``).

        While another holder beats, wait for it: it may finish (then False), die (then take over) or give up.
        """
        while True:
            with study_lock(self.ref.storage, self.ref.study_name):
                attrs = self.study.user_attrs
                done = attrs.get(RESULT_ATTR)
                if not redo and done and done.get("n_trials") == self.n_trials:
                    log.info("The final step for these %d trials is done: %s", self.n_trials, done.get("final_dir"))
                    return False
                lease = attrs.get(LEASE_ATTR)
                silent = time.time() - lease["heartbeat"] if lease else None
                if silent is None or silent > self.grace_period:
                    if lease:
                        log.warning(
                            "Taking over the final step from %s (%s), silent for %.0f s",
                            lease["holder"],
                            lease["token"],
                            silent,
                        )
                    self.unfinished = lease["holder"] if lease else attrs.get(UNFINISHED_ATTR)
                    self._beat()
                    self._thread = threading.Thread(target=self._keep_beating, name="final-lease", daemon=True)
                    self._thread.start()
                    return True
            log.info("Waiting for the final step being done by %s (%s)", lease["holder"], lease["token"])
            time.sleep(max(0.5, min(self.heartbeat_interval, self.grace_period / 2)))

    def record(self, result: dict[str, Any]) -> None:
        """The result, for every Optuna client of the study (dashboard, ``study.user_attrs``, the report)."""
        self.study.set_user_attr(RESULT_ATTR, {**result, "n_trials": self.n_trials})
        self._recorded = True

    def release(self) -> None:
        """Stop beating and give the lease back, if this holder has it; safe to call whatever happened before."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with study_lock(self.ref.storage, self.ref.study_name):
            lease = self.study.user_attrs.get(LEASE_ATTR)
            if lease and lease["token"] == self.token:
                self.study.set_user_attr(UNFINISHED_ATTR, None if self._recorded else self.holder)
                self.study.set_user_attr(LEASE_ATTR, None)

    def _beat(self) -> None:
        self.study.set_user_attr(
            LEASE_ATTR,
            {"n_trials": self.n_trials, "holder": self.holder, "token": self.token, "heartbeat": time.time()},
        )

    def _keep_beating(self) -> None:
        while not self._stop.wait(self.heartbeat_interval):
            self._beat()
