"""The peak row: how much of this machine's fp32 matmul throughput the MLP's epoch at the trainer's batch reaches.

The row's figures: the peak (a large square fp32 matmul, the best this machine's BLAS does), the matmul FLOPs
that the epoch really runs over its time, and a floor: those same products alone, at the epoch's shapes, on
random operands, which no training loop beats (skinny products run well below the square peak).

Peak and floor are short kernels that repeat exactly, so ``torch.utils.benchmark.Timer`` times them: a warm-up,
then blocks of runs until their spread settles (``adaptive_autorange``), with the device synchronised around each
block; they run on as many threads as training does (Timer's default is one).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.benchmark import Timer

from benchmarks.epochs import notebook_mlp
from svhn_sweep.core.train import BATCH_SIZE, EVAL_BATCH_SIZE

MATMUL_SIDE = {"cpu": 2048, "cuda": 8192}  # square matmuls big enough to reach each device's peak


def kernel_seconds(run: Callable[[], object]) -> float:
    """Median seconds of one call of ``run``, by ``Timer.adaptive_autorange`` on training's threads."""
    timer = Timer("run()", globals={"run": run}, num_threads=torch.get_num_threads())
    return timer.adaptive_autorange().median


def matmul_gflops(device: torch.device, dtype: torch.dtype) -> float:
    """Throughput of a large square matmul: what this machine's BLAS reaches at best."""
    n = MATMUL_SIDE[device.type]
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return 2 * n**3 / kernel_seconds(lambda: torch.mm(a, b)) / 1e9


def mlp_epoch_flops(model: nn.Module, n_train: int, n_val: int, first_input_grad: bool = False) -> float:
    """Matmul FLOPs of one epoch: train forward + weight grads + input grads, val forward.

    The first layer's input (the data) needs no gradient and autograd computes none; ``first_input_grad`` counts
    it anyway, as the common "training = 3x forward" rule of thumb does.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    forward = [2.0 * m.in_features * m.out_features for m in linears]
    train = sum(f * (2 if i == 0 and not first_input_grad else 3) for i, f in enumerate(forward))
    return n_train * train + n_val * sum(forward)


def layer_products(linears: list[nn.Linear], rows: int, train: bool) -> Callable[[], None]:
    """One batch of ``rows``' matrix products through ``linears``: forward, and with ``train`` the gradients'.

    The weight gradient of every layer; the input gradient of all but the first, as autograd computes them.
    """
    device = linears[0].weight.device
    inputs = [torch.randn(rows, m.in_features, device=device) for m in linears]
    grads = [torch.randn(rows, m.out_features, device=device) for m in linears]

    def run() -> None:
        for i, m in enumerate(linears):
            torch.nn.functional.linear(inputs[i], m.weight, m.bias)
            if train:
                grads[i].t().mm(inputs[i])
                if i > 0:
                    grads[i].mm(m.weight)

    return run


def batches(n: int, size: int) -> list[tuple[int, int]]:
    """(rows, count) of the batches that split ``n`` samples into ``size``: the full ones, then a short last one."""
    return [(rows, count) for rows, count in ((size, n // size), (n % size, 1)) if rows and count]


def epoch_matmul_seconds(model: nn.Module, n_train: int, n_val: int, batch_size: int = BATCH_SIZE) -> float:
    """Seconds for one epoch's matrix products alone, at the epoch's shapes: a floor no training loop beats.

    These are the products that :func:`mlp_epoch_flops` counts, at ``batch_size`` (the trainer's default) and the
    default evaluation batch, on random operands, without the rest of a step.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    plan = [
        (layer_products(linears, rows, train), count)
        for train, n, size in ((True, n_train, batch_size), (False, n_val, EVAL_BATCH_SIZE))
        for rows, count in batches(n, size)
    ]

    def epoch() -> None:
        for run, count in plan:
            for _ in range(count):
                run()

    return kernel_seconds(epoch)


def peak_fraction(epoch: float, n_train: int, n_val: int, device: torch.device) -> tuple[float, str]:
    """The fraction of the fp32 peak that an MLP epoch of ``epoch`` seconds reaches, and the figures behind it."""
    gflops = matmul_gflops(device, torch.float32)
    flops = mlp_epoch_flops(notebook_mlp(), n_train, n_val)
    floor = epoch_matmul_seconds(notebook_mlp().to(device), n_train, n_val)
    note = (
        f"fp32 matmul peak {gflops:.0f} GFLOP/s ({device.type}, {MATMUL_SIDE[device.type]}² square); the epoch "
        f"above runs {flops / 1e9:.1f} GFLOP of matmuls in {epoch:.3f} s = {flops / epoch / 1e9:.0f} GFLOP/s; "
        f"those matmuls alone, at the epoch's shapes, take {floor:.3f} s = {flops / floor / 1e9:.0f} GFLOP/s "
        f"({flops / floor / 1e9 / gflops:.0%} of peak); counted as 3× forward: "
        f"{mlp_epoch_flops(notebook_mlp(), n_train, n_val, True) / epoch / 1e9 / gflops:.0%}"
    )
    if device.type == "cuda":
        note += f"; bf16 matmul peak {matmul_gflops(device, torch.bfloat16):.0f} GFLOP/s"
    return flops / epoch / 1e9 / gflops, note
