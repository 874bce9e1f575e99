"""The training path: whole splits as tensors on the device, batches gathered by a permutation there.

Nothing inside an epoch waits for the device except a finiteness check every ``DIVERGENCE_CHECK_EVERY``
batches: loss and accuracy are summed on the device and read once at the end, so a GPU never idles on the
host and a CPU spends its time in the matrix products. On CUDA a whole training step (gather, normalise,
forward, backward, optimizer) is also captured once per epoch as a CUDA graph and replayed for every full
batch: a step of an SVHN-sized MLP is some 50 tiny kernels, and launching them one by one from Python costs
more than running them.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from svhn_sweep.core.checkpoint import Checkpoints, restore, save_checkpoint, usable_checkpoint
from svhn_sweep.core.data import Normalizer, Split
from svhn_sweep.core.errors import ConfigError, UserError

log = logging.getLogger(__name__)

# Batches between two checks for a NaN/inf loss: a diverged trial stops within this many steps, at the cost
# of one host-device sync per check instead of one per batch.
DIVERGENCE_CHECK_EVERY = 50
# The trainer's default batch sizes (trainer.batch_size, trainer.eval_batch_size). Training at 256 keeps the MLP's
# matrix products large enough for a CPU's BLAS; evaluation has no gradients to hold, so it takes bigger batches.
BATCH_SIZE = 256
EVAL_BATCH_SIZE = 4096
# Eager batches before each epoch's CUDA graph capture (PyTorch's recipe for whole-network capture uses a few).
CUDA_GRAPH_WARMUP = 3


class DivergedError(UserError):
    """The loss became NaN or infinite: more epochs cannot help this configuration."""


@dataclass
class EpochStats:
    """One epoch of training as the logs, ``metrics.json`` and the pruner see it (``val_acc`` None without val)."""

    epoch: int
    loss: float
    train_acc: float
    val_acc: float | None
    lr: float
    seconds: float


def select_device(choice: str) -> torch.device:
    """``auto`` takes CUDA when present; asking for ``cuda`` without it is an error, not a silent CPU run."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is visible; use trainer.device=auto or cpu.")
    return torch.device(choice)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators: a run's initialisation is fixed by its ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def use_amp(setting: bool | str, device: torch.device) -> bool:
    """``trainer.amp=auto`` is bf16 autocast where the device multiplies bf16 matrices in hardware: CUDA, and
    CPUs with AMX tiles (Intel Xeon 4th generation on), where an epoch of the default pyramids ran 1.4-1.9x faster
    at batch 256 (benchmarks/cpu_precision.py, docs/performance.md). Other CPUs keep fp32, which is faster there.
    """
    return bf16_matrix_units(device) if setting == "auto" else bool(setting)


def bf16_matrix_units(device: torch.device) -> bool:
    """Whether ``device`` has bf16 matrix units: CUDA, or a CPU with AMX (torch's private probe; absent: no)."""
    if device.type == "cuda":
        return True
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return device.type == "cpu" and probe is not None and bool(probe())


def use_cuda_graphs(setting: bool | str, device: torch.device) -> bool:
    """``trainer.cuda_graphs=auto`` is on with CUDA; ``true`` without CUDA is a mistake worth saying."""
    if setting is True and device.type != "cuda":
        raise ConfigError(
            f"Invalid config value trainer.cuda_graphs=True: CUDA graphs need a CUDA device, and "
            f"this run trains on {device.type}; use trainer.cuda_graphs=auto or false."
        )
    return device.type == "cuda" and setting in ("auto", True)


def autocast(device: torch.device, amp: bool) -> torch.autocast:
    """bf16 autocast when ``amp``: matrix products in bf16, losses and reductions kept in fp32 by torch.

    Its cache of bf16 weights is off: a CUDA graph must not capture tensors that outlive the step.
    """
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp, cache_enabled=False)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Split,
    normalize: Normalizer,
    batch_size: int,
    generator: torch.Generator,
    amp: bool = False,
    cuda_graph: bool = False,
) -> tuple[float, float]:
    """One pass over ``data`` in a random order; returns (mean loss, train accuracy) over the samples seen.

    ``generator`` must live on ``data``'s device (the permutation is drawn there). A loss that turns NaN/inf
    ends the epoch at the next check and is returned as it is, for :func:`fit` to stop the run. With
    ``cuda_graph`` the full batches replay one captured step; the arithmetic is the same.
    """
    model.train()
    device = data.labels.device
    if device.type == "cpu":
        fuse_steps(optimizer)
    order = torch.randperm(len(data), generator=generator, device=device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    buffer = torch.empty((min(batch_size, len(data)), *data.images.shape[1:]), device=device)

    def step(index: torch.Tensor) -> None:
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
        loss_sum.add_(loss.detach() * len(index))
        correct.add_((logits.detach().argmax(1) == labels).sum())

    batches, done = order.split(batch_size), 0
    full_batch = step
    if cuda_graph and len(batches) > CUDA_GRAPH_WARMUP:  # the warm-up batches are full ones
        full_batch, done = captured(step, batches[:CUDA_GRAPH_WARMUP]), CUDA_GRAPH_WARMUP
    seen = done * batch_size
    for number, index in enumerate(batches[done:], start=done + 1):
        (full_batch if len(index) == batch_size else step)(index)
        seen += len(index)
        if number % DIVERGENCE_CHECK_EVERY == 0 and not torch.isfinite(loss_sum):
            break
    return loss_sum.item() / seen, correct.item() / seen


def fuse_steps(optimizer: torch.optim.Optimizer) -> None:
    """Let ``optimizer`` step with torch's fused CPU kernel where it has one (SGD, Adam, AdamW, Adagrad), unless
    ``fused`` or ``foreach`` was chosen: one pass over each parameter instead of one per operation (weight decay,
    momentum, update).

    On a CPU that loop was the largest cost of a step outside the matrix products: a third of a step of an MLP
    1024-256 at batch 128, a quarter of one of 1x100 (torch.profiler). The update is the same formula, computed
    with fused multiply-adds, so parameters differ from the per-operation loop in the last bits of each step.
    Set before the first step (Adam's state takes the fused layout then); later calls change nothing.
    """
    if "fused" not in optimizer.defaults:
        return
    for group in optimizer.param_groups:
        if group.get("fused") is None and group.get("foreach") is None and not group.get("differentiable"):
            group["fused"] = True


def captured(step: Callable[[torch.Tensor], None], warmup: tuple[torch.Tensor, ...]) -> Callable[[torch.Tensor], None]:
    """``step`` as a CUDA graph: run ``warmup`` batches eagerly, capture one step, return its replay.

    The warm-up batches train like any other; they run on a side stream, as CUDA graph capture requires, so that
    lazy state (optimizer buffers, cuBLAS workspaces, cuDNN's choice of kernels) exists before the capture.
    The replay reads its batch's indices from one fixed tensor, and the learning rate is part of the graph,
    hence a fresh capture every epoch (the scheduler changes it between epochs).
    """
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for index in warmup:
            step(index)
    torch.cuda.current_stream().wait_stream(side)
    static_index = warmup[0].clone()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step(static_index)

    def replay(index: torch.Tensor) -> None:
        static_index.copy_(index)
        graph.replay()

    return replay


def make_capturable(optimizer: torch.optim.Optimizer) -> bool:
    """Prepare ``optimizer`` for CUDA graph capture; False if its step cannot be captured.

    SGD keeps no step count; Adam-style optimizers keep it on the host unless ``capturable`` is set, which moves
    it to the device (done here, before their first step creates it). Others are left to run eagerly.
    """
    if not isinstance(optimizer, torch.optim.SGD) and "capturable" not in optimizer.defaults:
        log.info("CUDA graphs off: %s cannot be captured", type(optimizer).__name__)
        return False
    for group in optimizer.param_groups:
        if "capturable" in group:
            group["capturable"] = True
    # Warm-up batches and a short last batch step such an optimizer outside a graph, which torch warns about.
    optimizer._warned_capturable_if_run_uncaptured = True
    return True


@torch.inference_mode()
def predict(
    model: nn.Module, data: Split, normalize: Normalizer, batch_size: int = EVAL_BATCH_SIZE, amp: bool = False
) -> torch.Tensor:
    """Predicted class of every sample, in dataset order (the notebook's ``evaluate_model``)."""
    model.eval()
    buffer = torch.empty((min(batch_size, len(data)), *data.images.shape[1:]), device=data.images.device)
    with autocast(data.images.device, amp):
        return torch.cat(
            [model(normalize(chunk, out=buffer[: len(chunk)])).argmax(1) for chunk in data.images.split(batch_size)]
        )


def accuracy(
    model: nn.Module, data: Split, normalize: Normalizer, batch_size: int = EVAL_BATCH_SIZE, amp: bool = False
) -> float:
    """Fraction of ``data`` the model classifies correctly (the notebook's ``compute_accuracy``)."""
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
    eval_batch_size: int = EVAL_BATCH_SIZE,
    on_epoch: Callable[[EpochStats], None] | None = None,
    *,
    amp: bool = False,
    compile_model: bool = False,
    cuda_graphs: bool = False,
    verbose: bool = True,
    checkpoints: Checkpoints | None = None,
    on_resume: Callable[[list[EpochStats]], None] | None = None,
) -> list[EpochStats]:
    """Train for ``epochs``, scoring ``val`` after each; ``on_epoch`` sees every epoch's stats as they come.

    ``train`` and ``val`` must already be on the model's device. ``amp`` turns on bf16 autocast,
    ``compile_model`` runs the model through ``torch.compile`` (``model`` itself is trained either way),
    ``cuda_graphs`` replays each epoch's training step as a CUDA graph where the optimizer allows it.
    Each epoch is logged at INFO, or at DEBUG when not ``verbose`` (many trials at once make a long log).

    With ``checkpoints``, the state after each epoch (after ``on_epoch``: a pruned epoch is never saved as one to
    go on from) is saved, and a usable saved state is continued from the epoch after it; ``on_resume`` then sees
    the restored epochs' stats before any training. The returned history includes them.
    """
    device = train.labels.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every batch has the same shape: let cuDNN keep its fastest conv
    generator = torch.Generator(device=device).manual_seed(seed)
    history: list[EpochStats] = []
    saved = None if checkpoints is None else usable_checkpoint(checkpoints, epochs, device)
    if saved is not None:
        restore(saved, model, optimizer, scheduler, generator)
        history = [EpochStats(**stats) for stats in saved["history"]]
        if on_resume is not None:
            on_resume(list(history))
    net = torch.compile(model) if compile_model else model
    cuda_graph = cuda_graphs and not compile_model and make_capturable(optimizer)
    for epoch in range(len(history) + 1, epochs + 1):
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        loss, train_acc = train_epoch(net, optimizer, train, normalize, batch_size, generator, amp, cuda_graph)
        if not math.isfinite(loss):
            raise DivergedError(f"loss became {loss} in epoch {epoch} (lr={lr:g}); the trial is stopped")
        val_acc = accuracy(net, val, normalize, eval_batch_size, amp) if val is not None else None
        if scheduler is not None:
            scheduler.step()
        stats = EpochStats(epoch, loss, train_acc, val_acc, lr, time.perf_counter() - start)
        history.append(stats)
        log.log(
            logging.INFO if verbose else logging.DEBUG,
            "epoch %d/%d  loss %.4f  train_acc %.4f  val_acc %s  lr %.3g  (%.2fs)",
            epoch,
            epochs,
            loss,
            train_acc,
            "-" if val_acc is None else f"{val_acc:.4f}",
            lr,
            stats.seconds,
        )
        if on_epoch is not None:
            on_epoch(stats)
        if checkpoints is not None:
            save_checkpoint(checkpoints, history, model, optimizer, scheduler, generator)
    return history


def history_records(history: list[EpochStats]) -> list[dict[str, float | int | None]]:
    """The epochs as JSON-ready dicts, for ``metrics.json``."""
    return [asdict(stats) for stats in history]
