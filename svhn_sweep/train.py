"""The training path: whole splits as tensors, batches gathered by a permutation, one sync per epoch."""

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


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Split,
    normalize: Normalizer,
    batch_size: int,
    generator: torch.Generator,
) -> tuple[float, float]:
    """One pass over ``data`` in a random order; returns (mean loss, train accuracy)."""
    model.train()
    order = torch.randperm(len(data), generator=generator).to(data.labels.device)
    loss_sum = torch.zeros((), device=data.labels.device)
    correct = torch.zeros((), dtype=torch.long, device=data.labels.device)
    for index in order.split(batch_size):
        images, labels = normalize(data.images[index]), data.labels[index]
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(index)
        correct += (logits.detach().argmax(1) == labels).sum()
    return loss_sum.item() / len(data), correct.item() / len(data)


@torch.inference_mode()
def predict(model: nn.Module, data: Split, normalize: Normalizer, batch_size: int = 4096) -> torch.Tensor:
    """Predicted class of every sample, in dataset order (the seed's ``evaluate_model``)."""
    model.eval()
    return torch.cat([model(normalize(chunk)).argmax(1) for chunk in data.images.split(batch_size)])


def accuracy(model: nn.Module, data: Split, normalize: Normalizer, batch_size: int = 4096) -> float:
    """Fraction of ``data`` the model classifies correctly (the seed's ``compute_accuracy``)."""
    return (predict(model, data, normalize, batch_size) == data.labels).float().mean().item()


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
) -> list[EpochStats]:
    """Train for ``epochs``, scoring ``val`` after each; ``on_epoch`` sees every epoch's stats as they come."""
    generator = torch.Generator().manual_seed(seed)
    history: list[EpochStats] = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        loss, train_acc = train_epoch(model, optimizer, train, normalize, batch_size, generator)
        if not math.isfinite(loss):
            raise DivergedError(f"loss became {loss} in epoch {epoch} (lr={lr:g}); the trial is stopped")
        val_acc = accuracy(model, val, normalize, eval_batch_size) if val is not None else None
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
