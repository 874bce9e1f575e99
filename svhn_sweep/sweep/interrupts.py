"""SIGTERM and SIGHUP stop a sweep the way Ctrl-C does: schedulers (SLURM preemption, ``docker stop``, systemd)
send SIGTERM, and a closed terminal SIGHUP. Each is raised in the main thread as :class:`Interrupted`, a
``KeyboardInterrupt``, so every ``finally`` and every handler written for Ctrl-C runs for them too.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

TERMINATING = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A terminating signal, raised where the main thread is."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_of(interrupt: BaseException) -> signal.Signals:
    """The signal behind an interrupt: its own for :class:`Interrupted`, SIGINT for a plain Ctrl-C."""
    return signal.Signals(interrupt.signum if isinstance(interrupt, Interrupted) else signal.SIGINT)


def exit_status(interrupt: BaseException) -> int:
    """The shell's convention for a command stopped by a signal: 128 + its number (130 for Ctrl-C, 143 SIGTERM)."""
    return 128 + signal_of(interrupt)


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    for terminating in TERMINATING:  # the clean-up that follows (trials marked, claim given back) runs once
        signal.signal(terminating, signal.SIG_IGN)
    raise Interrupted(signum)


@contextmanager
def terminating_signals_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Interrupted`; the previous handlers come back after.

    A signal the command was started ignoring stays ignored: ``nohup`` means the sweep outlives the terminal.
    """
    previous = {
        signum: signal.signal(signum, _raise_interrupted)
        for signum in TERMINATING
        if signal.getsignal(signum) is not signal.SIG_IGN
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
