"""How a user's mistake reaches the terminal from inside Hydra: its message alone, no traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hydra.errors import CompactHydraException

from svhn_sweep.core.errors import UserError


class ReportedError(CompactHydraException):
    """An error Hydra prints as its message only (``HYDRA_FULL_ERROR=1`` shows the traceback)."""


@contextmanager
def reported() -> Iterator[None]:
    """Turn the core's :class:`UserError` into a :class:`ReportedError` where it would reach Hydra's handler."""
    try:
        yield
    except UserError as error:
        raise ReportedError(str(error)) from None
