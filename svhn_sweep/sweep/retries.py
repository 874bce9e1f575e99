"""Which trials count toward ``n_trials``, and the retry of an interrupted one.

A trial counts when it evaluated its config: COMPLETE, PRUNED, or FAIL by its own doing (it diverged, or its
code raised). A trial stopped from outside (Ctrl-C, SIGTERM, SIGHUP, a killed process or a lost job, whose
heartbeat goes stale) says nothing about its config: it does not count, and a WAITING copy with the same parameters
is evaluated first, with Optuna's retry bookkeeping (``failed_trial``, ``retry_history``), as Optuna's own
:class:`~optuna.storages.RetryHeartbeatStaleTrialCallback` does for stale trials.
"""

from __future__ import annotations

import copy

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from svhn_sweep.constants import FAIL_REASON_ATTR, RUN_DIR_ATTR

ERROR, DIVERGED, INTERRUPTED = "error", "diverged", "interrupted"
# What a retry does not inherit from the attempt it retries: why that one stopped and where it ran.
NOT_INHERITED = (FAIL_REASON_ATTR, RUN_DIR_ATTR)


def fail_reason(trial: FrozenTrial) -> str | None:
    """Why a FAIL trial failed (None for a stale one, failed by Optuna's heartbeat check)."""
    reason = trial.user_attrs.get(FAIL_REASON_ATTR)
    return None if reason is None else str(reason)


def why_ended(trial: FrozenTrial) -> str:
    """Why a trial ended, for a message: its state, and for a FAIL one its reason ("judged stale" when none)."""
    if trial.state != TrialState.FAIL:
        return trial.state.name
    return f"FAIL: {fail_reason(trial) or 'judged stale, no heartbeat for the grace period'}"


def is_interrupted(trial: FrozenTrial) -> bool:
    """A FAIL trial stopped from outside: told "interrupted: ..." by the sweeper, or failed stale by Optuna."""
    if trial.state != TrialState.FAIL:
        return False
    reason = fail_reason(trial)
    return reason is None or reason.startswith(INTERRUPTED)


def evaluated(trial: FrozenTrial) -> bool:
    """A trial that evaluated its config: what ``n_trials`` counts once it has finished."""
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and not is_interrupted(trial)
    )


def counted(trial: FrozenTrial) -> bool:
    """A trial that counts toward ``n_trials``: evaluated, or running now."""
    return evaluated(trial) or trial.state == TrialState.RUNNING


def retry(study: optuna.Study, trial: FrozenTrial) -> None:
    """Enqueue a WAITING copy of an interrupted ``trial``: same parameters and user attributes (but why it stopped
    and where it ran), ``failed_trial`` and ``retry_history`` as Optuna's retry callback writes them.
    """
    attempt = copy.deepcopy(trial)
    attempt.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in NOT_INHERITED}
    RetryHeartbeatStaleTrialCallback()(study, attempt)


def retried_attempt(trial: FrozenTrial) -> int | None:
    """The number of the interrupted attempt this trial retries (the last of its ``retry_history``), or None."""
    history = trial.system_attrs.get("retry_history")  # as Optuna's retry callback writes it (its reader warns)
    return history[-1] if history else None
