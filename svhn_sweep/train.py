"""The training path: whole splits as tensors on the device, batches gathered by a permutation there.

Nothing inside an epoch waits for the device except a finiteness check every ``DIVERGENCE_CHECK_EVERY``
batches: loss and accuracy are summed on the device and read once at the end, so a GPU never idles on the
host and a CPU spends its time in the matrix products.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from svhn_sweep.data import Normalizer, Split
from svhn_sweep.errors import UserError

log = logging.getLogger(__name__)

# Batches between two checks for a NaN/inf loss: a diverged trial stops within this many steps, at the cost
# of one host-device sync per check instead of one per batch.
DIVERGENCE_CHECK_EVERY = 50


class DivergedError(UserError):
    """The loss became NaN or infinite: more epochs cannot help this configuration."""


@dataclass
class EpochStats:
    epoch: int
    loss: float
    train_acc: float
    val_acc: float | None
    lr: float
    seconds: float


def use_amp(setting: bool | str, device: torch.device) -> bool:
    """``trainer.amp=auto`` is bf16 autocast on CUDA only: a CPU run keeps the exact fp32 numbers."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


def autocast(device: torch.device, amp: bool) -> torch.autocast:
    """bf16 autocast when ``amp``: matrix products in bf16, losses and reductions kept in fp32 by torch."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Split,
    normalize: Normalizer,
    batch_size: int,
    generator: torch.Generator,
    amp: bool = False,
) -> tuple[float, float]:
    """One pass over ``data`` in a random order; returns (mean loss, train accuracy) over the samples seen.

    ``generator`` must live on ``data``'s device (the permutation is drawn there). A loss that turns NaN/inf
    ends the epoch at the next check and is returned as it is, for :func:`fit` to stop the run.
    """
    model.train()
    device = data.labels.device
    order = torch.randperm(len(data), generator=generator, device=device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    buffer = torch.empty((min(batch_size, len(data)), *data.images.shape[1:]), device=device)
    seen = 0
    for step, index in enumerate(order.split(batch_size), start=1):
        # Every batch is normalised into the same buffer: the previous batch's backward pass, the last user of
        # its input, is done (on a GPU, queued before this copy on the same stream).
        images = normalize(data.images.index_select(0, index), out=buffer[: len(index)])
        labels = data.labels.index_select(0, index)
        with autocast(device, amp):
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(index)
        correct += (logits.detach().argmax(1) == labels).sum()
        seen += len(index)
        if step % DIVERGENCE_CHECK_EVERY == 0 and not torch.isfinite(loss_sum):
            break
    return loss_sum.item() / seen, correct.item() / seen


@torch.inference_mode()
def predict(model: nn.Module, data: Split, normalize: Normalizer, batch_size: int = 4096,
            amp: bool = False) -> torch.Tensor:
    """Predicted class of every sample, in dataset order (the seed's ``evaluate_model``)."""
    model.eval()
    buffer = torch.empty((min(batch_size, len(data)), *data.images.shape[1:]), device=data.images.device)
    with autocast(data.images.device, amp):
        return torch.cat([model(normalize(chunk, out=buffer[: len(chunk)])).argmax(1)
                          for chunk in data.images.split(batch_size)])


def accuracy(model: nn.Module, data: Split, normalize: Normalizer, batch_size: int = 4096,
             amp: bool = False) -> float:
    """Fraction of ``data`` the model classifies correctly (the seed's ``compute_accuracy``)."""
    return (predict(model, data, normalize, batch_size, amp) == data.labels).float().mean().item()


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    train: Split,
    val: Split | None,
    normalize: Normalizer,
    epochs: int,
    batch_size: int,
    seed: int,
    eval_batch_size: int = 4096,
    on_epoch: Callable[[EpochStats], None] | None = None,
    *,
    amp: bool = False,
    compile_model: bool = False,
) -> list[EpochStats]:
    """Train for ``epochs``, scoring ``val`` after each; ``on_epoch`` sees every epoch's stats as they come.

    ``train`` and ``val`` must already be on the model's device. ``amp`` turns on bf16 autocast,
    ``compile_model`` runs the model through ``torch.compile`` (``model`` itself is trained either way).
    """
    device = train.labels.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every batch has the same shape: let cuDNN keep its fastest conv
    generator = torch.Generator(device=device).manual_seed(seed)
    net = torch.compile(model) if compile_model else model
    history: list[EpochStats] = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        loss, train_acc = train_epoch(net, optimizer, train, normalize, batch_size, generator, amp)
        if not math.isfinite(loss):
            raise DivergedError(f"loss became {loss} in epoch {epoch} (lr={lr:g}); the trial is stopped")
        val_acc = accuracy(net, val, normalize, eval_batch_size, amp) if val is not None else None
        if scheduler is not None:
            scheduler.step()
        stats = EpochStats(epoch, loss, train_acc, val_acc, lr, time.perf_counter() - start)
        history.append(stats)
        log.info(
            "epoch %d/%d  loss %.4f  train_acc %.4f  val_acc %s  lr %.3g  (%.2fs)",
            epoch, epochs, loss, train_acc, "-" if val_acc is None else f"{val_acc:.4f}", lr, stats.seconds,
        )
        if on_epoch is not None:
            on_epoch(stats)
    return history


def history_records(history: list[EpochStats]) -> list[dict[str, float | int | None]]:
    return [asdict(stats) for stats in history]
