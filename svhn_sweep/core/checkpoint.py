"""Per-epoch checkpoints: everything :func:`~svhn_sweep.core.train.fit` needs to go on exactly where it stopped.

A checkpoint holds the model, optimizer and scheduler states, every random generator the run draws from (the
batch order's, torch's global one that dropout uses, CUDA's, numpy's and Python's), the epochs done with their
stats (so also every value reported to a pruner) and a fingerprint of the run's config, given by the caller.
On the CPU a run resumed from epoch k ends bit for bit where the same run never interrupted does.

It is written atomically after every epoch (one file, replaced), so a kill at any moment leaves the last whole
epoch. It is read with ``weights_only=True``: tensors and plain values only, so a file from elsewhere (a retried
trial's folder) cannot run code.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from svhn_sweep.core.files import save_torch

log = logging.getLogger(__name__)

FORMAT = 1  # bumped when the content changes: an older file is then ignored, with a log line


@dataclass(frozen=True)
class Checkpoints:
    """Where ``fit`` saves its state after every epoch, and which saved states it may continue.

    ``resume_from`` is tried in order; the first file that exists, reads, has this ``fingerprint`` (the same run:
    the caller decides what that means) and the same device type, and has no more epochs than asked for, is
    continued. The others are skipped, each with a log line saying why.
    """

    path: Path
    fingerprint: str
    resume_from: Sequence[Path] = ()


def random_states(generator: torch.Generator) -> dict[str, Any]:
    """Every generator a run draws from, as tensors and plain values (readable with ``weights_only``)."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "batch_order": generator.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "numpy": {
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": numpy_state["state"]["pos"],
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        },
        "python": random.getstate(),
    }


def set_random_states(generator: torch.Generator, states: dict[str, Any]) -> None:
    """Put back what :func:`random_states` took."""
    generator.set_state(states["batch_order"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None:
        torch.cuda.set_rng_state_all(states["cuda"])
    saved = states["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": saved["key"].numpy().astype(np.uint32), "pos": saved["pos"]},
            "has_gauss": saved["has_gauss"],
            "gauss": saved["gauss"],
        }
    )
    random.setstate(saved_python(states["python"]))


def saved_python(state: Any) -> tuple[Any, ...]:
    """Python's generator state as ``random.setstate`` takes it (tuples: pickling may hand back lists)."""
    version, internal, gauss = state
    return version, tuple(internal), gauss


def save_checkpoint(
    checkpoints: Checkpoints,
    history: list[Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    generator: torch.Generator,
) -> None:
    """Write the state after ``history[-1]``'s epoch to ``checkpoints.path``, replacing the one before it."""
    state = {
        "format": FORMAT,
        "fingerprint": checkpoints.fingerprint,
        "device": generator.device.type,
        "epoch": len(history),
        "history": [asdict(stats) for stats in history],
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "random": random_states(generator),
    }
    save_torch(state, checkpoints.path)


def usable_checkpoint(checkpoints: Checkpoints, epochs: int, device: torch.device) -> dict[str, Any] | None:
    """The first saved state of ``checkpoints.resume_from`` this run may continue, or None."""
    for path in checkpoints.resume_from:
        if not path.is_file():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a file cut short by a full disk, or not a checkpoint at all
            log.warning("Not resuming from %s: it cannot be read (%s: %s)", path, type(error).__name__, error)
            continue
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            why = "it was written by another version of svhn_sweep"
        elif state["fingerprint"] != checkpoints.fingerprint:
            why = "it was written by a run of another config"
        elif state["device"] != device.type:
            why = f"it was trained on {state['device']}, and this run trains on {device.type}"
        elif state["epoch"] > epochs:
            why = f"it has {state['epoch']} epochs done, more than the {epochs} of this run"
        else:
            log.info("Resuming from %s: %d of %d epochs done", path, state["epoch"], epochs)
            return state
        log.warning("Not resuming from %s: %s; training from epoch 1", path, why)
    return None


def restore(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    generator: torch.Generator,
) -> None:
    """Load a saved state into the run's live objects (parameters and buffers stay on their device)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    set_random_states(generator, state["random"])
