"""What a training step costs beyond its matrix products, per batch size: is a small batch cheap on a CPU?

For each model (``--models``: layer sizes, e.g. ``100`` for the notebook's MLP) and batch size:

* the epoch: seconds of one ``core.train.fit`` epoch (training pass + val) with the sweep's SGD (momentum 0.9,
  weight decay 1e-4), the median of ``--repeats`` epochs after a first, untimed one;
* the matmul limit: the same epoch's matrix products alone, at its shapes, on random operands
  (``matmul_peak.epoch_matmul_seconds``), the floor no training loop beats; the row's figure is that floor as a
  fraction of the epoch ("CPU epoch as % of the matmul limit": 100 % = nothing but matrix products);
* where the rest goes: one training pass under ``torch.profiler``, its CPU time split into the matrix products,
  the optimizer step, the batch gather, the normalisation, the loss (forward and backward), the rest of the model
  (bias, ReLU, BatchNorm, their gradients), gradient bookkeeping (zero_grad, accumulation) and the epoch's own
  bookkeeping (loss and accuracy sums). Shares of profiled time: the profiler adds a little to every small op.

Random pixels of SVHN's shapes: timing does not depend on them. The threads are torch's (one per core) unless
``--threads`` says otherwise.

    python benchmarks/step_cost.py                                    # 1x100 and 1024-256, batch 64..512
    python benchmarks/step_cost.py --models 100 --batch-sizes 128 256 --train-size 58606
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.autograd.profiler_util import FunctionEvent
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

from benchmarks.bench import random_train_file, train_val  # noqa: E402
from benchmarks.matmul_peak import epoch_matmul_seconds  # noqa: E402
from benchmarks.peer_script import MOMENTUM, WEIGHT_DECAY  # noqa: E402
from benchmarks.table import machine  # noqa: E402
from svhn_sweep.constants import SVHN_MEAN, SVHN_STD, SVHN_TRAIN_SIZE  # noqa: E402
from svhn_sweep.core.data import Normalizer, Split  # noqa: E402
from svhn_sweep.core.models import MLP  # noqa: E402
from svhn_sweep.core.train import fit, train_epoch  # noqa: E402

MATMULS = {"aten::mm", "aten::addmm"}
# A top-level profiler event (or the autograd function that runs it) -> its part of a step; the matrix products
# are taken out of every part first, wherever they run.
PARTS = {
    "Optimizer.step": "optimizer step",
    "Optimizer.zero_grad": "gradient bookkeeping",
    "AccumulateGrad": "gradient bookkeeping",
    "aten::index_select": "gather",
    "aten::copy_": "normalise",
    "aten::sub_": "normalise",
    "aten::mul_": "normalise",
    "aten::cross_entropy": "loss",
    "NllLossBackward0": "loss",
    "LogSoftmaxBackward0": "loss",
    "aten::linear": "model, non-matmul",
    "aten::relu_": "model, non-matmul",
    "aten::flatten": "model, non-matmul",
    "aten::batch_norm": "model, non-matmul",
    "Backward0": "model, non-matmul",
}
SHOWN = ["matmuls", *dict.fromkeys(PARTS.values()), "epoch bookkeeping"]


def part(event: FunctionEvent) -> str:
    """The part of a step that a top-level event belongs to (its name's first match in :data:`PARTS`)."""
    return next((name for key, name in PARTS.items() if key in event.name), "epoch bookkeeping")


def breakdown(sizes: list[int], data: Split, batch: int) -> dict[str, float]:
    """Shares of one profiled training pass's CPU time, by part of the step."""
    torch.manual_seed(0)
    model = MLP(sizes)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    normalize = Normalizer(SVHN_MEAN, SVHN_STD)
    generator = torch.Generator().manual_seed(0)
    train_epoch(model, optimizer, data, normalize, batch, generator)  # warm-up: momentum buffers, allocations
    with profile(activities=[ProfilerActivity.CPU]) as profiled:
        train_epoch(model, optimizer, data, normalize, batch, generator)
    seconds: dict[str, float] = defaultdict(float)
    events = profiled.events()
    for event in events:
        if event.name in MATMULS:
            seconds["matmuls"] += event.self_cpu_time_total
    for event in events:
        if event.cpu_parent is None:
            inside = sum(e.self_cpu_time_total for e in descendants(event) if e.name in MATMULS)
            seconds[part(event)] += event.cpu_time_total - inside
    total = sum(seconds.values())
    return {name: seconds[name] / total for name in SHOWN}


def descendants(event: FunctionEvent) -> list[FunctionEvent]:
    """``event`` and every event under it."""
    found, stack = [], [event]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(current.cpu_children)
    return found


def epoch_seconds(sizes: list[int], train: Split, val: Split, batch: int, repeats: int) -> float:
    """Median seconds of the epochs after the first of a ``fit`` with the sweep's SGD."""
    torch.manual_seed(0)
    model = MLP(sizes)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    normalize = Normalizer(SVHN_MEAN, SVHN_STD)
    history = fit(model, optimizer, None, train, val, normalize, 1 + repeats, batch, seed=0, verbose=False)
    return statistics.median(stats.seconds for stats in history[1:])


def main() -> None:
    """One row per model and batch size, printed as a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["100", "1024-256"], help="layer sizes, e.g. 512-256")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--train-size", type=int, default=SVHN_TRAIN_SIZE, help="rows of the train file")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train, val = train_val(random_train_file(args.train_size))
    print(f"Machine: {machine(torch.device('cpu'))}")
    print(f"Command: python {' '.join(sys.argv)}; {len(train)} train + {len(val)} val rows (random pixels)\n")
    header = "| model | batch | epoch | matmuls alone | % of the matmul limit | " + " | ".join(SHOWN) + " |"
    print(header, "|" + "---|" * (header.count("|") - 1), sep="\n")
    for model in args.models:
        sizes = [int(width) for width in model.split("-")]
        for batch in args.batch_sizes:
            print(f"... {model} at batch {batch}", file=sys.stderr, flush=True)
            epoch = epoch_seconds(sizes, train, val, batch, args.repeats)
            floor = epoch_matmul_seconds(MLP(sizes), len(train), len(val), batch)
            shares = breakdown(sizes, train, batch)
            cells = " | ".join(f"{shares[name]:.0%}" for name in SHOWN)
            print(f"| {model} | {batch} | {epoch:.3f} s | {floor:.3f} s | {floor / epoch:.0%} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
