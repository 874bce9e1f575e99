"""Files written whole or not at all (svhn_sweep/core/files.py), and an interrupt inside torch's writer."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
import torch

from svhn_sweep.core import files


class FailingWrites(io.BytesIO):
    """A handle whose ``after``-th write raises ``error``: Ctrl-C, or a disk error, inside torch's zip writer."""

    def __init__(self, after: int, error: BaseException) -> None:
        super().__init__()
        self.after, self.error = after, error

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.after -= 1
        if self.after == 0:
            raise self.error
        return super().write(data)


def handing(handle: io.BytesIO) -> Callable[[Path], AbstractContextManager[io.BytesIO]]:
    """An ``atomic_write`` that hands out ``handle``."""

    @contextmanager
    def atomic_write(_path: Path) -> Iterator[io.BytesIO]:
        yield handle

    return atomic_write


def test_ctrl_c_inside_torch_save_is_raised_as_the_interrupt_not_as_the_writer_s_error(monkeypatch, tmp_path) -> None:
    # torch's writer turns it into "RuntimeError: ... unexpected pos" on its way out; a sweep would count the
    # interrupted trial as crashed (seen in the suite: Ctrl-C during a checkpoint failed the sweep)
    with pytest.raises(RuntimeError, match="unexpected pos"):
        torch.save({"w": torch.ones(100)}, FailingWrites(3, KeyboardInterrupt()))
    monkeypatch.setattr(files, "atomic_write", handing(FailingWrites(3, KeyboardInterrupt())))
    with pytest.raises(KeyboardInterrupt):
        files.save_torch({"w": torch.ones(100)}, tmp_path / "checkpoint.pt")


def test_a_writer_error_without_an_interrupt_is_raised_as_it_is(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(files, "atomic_write", handing(FailingWrites(3, OSError("disk full"))))
    with pytest.raises(RuntimeError) as error:
        files.save_torch({"w": torch.ones(100)}, tmp_path / "checkpoint.pt")
    assert isinstance(error.value.__context__, OSError)


def test_save_torch_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    files.save_torch({"w": torch.arange(5)}, path)
    files.save_torch({"w": torch.arange(7)}, path)
    assert torch.equal(torch.load(path)["w"], torch.arange(7))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left
