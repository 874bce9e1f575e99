"""Files written whole or not at all: a reader, or an interrupted writer's next run, never sees half a file."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import torch


@contextmanager
def atomic_write(path: str | Path, mode: int | None = None) -> Iterator[BinaryIO]:
    """A binary handle on a temporary file beside ``path`` that replaces ``path`` in one rename when the block ends.

    The data is flushed to disk before the rename; on any exception (Ctrl-C included) the temporary file is
    removed and ``path`` is left as it was. ``mode`` sets the file's permissions (default: the umask's).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_torch(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path``, atomically. Ctrl-C (or SIGTERM) inside torch's zip writer comes out of its
    clean-up as a RuntimeError ("unexpected pos ..."), the interrupt only its context: the interrupt is re-raised,
    so that the run counts as interrupted, not as crashed.
    """
    try:
        with atomic_write(path) as handle:
            torch.save(obj, handle)
    except Exception as error:
        cause = error.__context__
        while cause is not None and not isinstance(cause, KeyboardInterrupt):
            cause = cause.__context__
        if cause is None:
            raise
        raise cause from None


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    """``payload`` as indented JSON, written atomically."""
    with atomic_write(path) as handle:
        handle.write((json.dumps(payload, indent=2) + "\n").encode())
