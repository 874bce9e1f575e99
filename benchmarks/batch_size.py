"""Val accuracy against wall-clock time for each training batch size: what the default batch follows from.

Two stages, each at every ``--batch-sizes`` value, with the learning rate scaled from ``--lr`` at ``--lr-batch``
by each ``--scaling`` rule (linear: lr × batch / lr-batch; sqrt: × its square root; none: the same lr):

* trials: the 8 configs of ``peer_script.py`` (MLP pyramids [100] ... [512,256,128], no BatchNorm, SGD momentum
  0.9, weight decay 1e-4, no schedule), ``--epochs`` each, trained one after the other in this process through
  svhn_sweep's training path (``core.train.fit``), as a sweep's trials run. The curve is the best val accuracy
  known so far against the time since the stage began: what the sweep knows at each moment. A sweep's start-up
  and its per-trial overhead (the same at every batch size) are left out.
* final retrain: one config (``--final-config``; default: the trials' best at ``--lr-batch``) for
  ``--final-epochs``, scored on val after every epoch. The real retrain trains on train + val and scores test
  once; this curve, on train only, is its stand-in for choosing the batch.

The same split, initialisation and batch order (``seed=42``) for every row. The tables print as markdown for
``docs/search.md``: per row the wall time, the val accuracy at the end (trials: the best so far, which a search
keeps; retrain: the last epoch's, which the retrain keeps), the time each row first reaches each ``--quality``,
and the curve sampled at equal times (fractions of the fastest row's whole run, so that every row has a value at
each of them). ``--json`` keeps every epoch's (time, val accuracy).

    python benchmarks/batch_size.py                              # full-size synthetic set, linear scaling
    python benchmarks/batch_size.py --scaling linear sqrt --stages trials
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

from benchmarks.peer_script import CONFIGS, EPOCHS, LR, MOMENTUM, SEED, WEIGHT_DECAY, fmt, name  # noqa: E402
from benchmarks.sweeps import DATA_ROOT, load_note  # noqa: E402
from benchmarks.table import machine  # noqa: E402
from svhn_sweep.constants import SVHN_TEST_SIZE, SVHN_TRAIN_SIZE  # noqa: E402
from svhn_sweep.core.data import Normalizer, Split, SyntheticSource  # noqa: E402
from svhn_sweep.core.models import MLP  # noqa: E402
from svhn_sweep.core.train import EpochStats, fit, seed_everything  # noqa: E402

SCALING = {"linear": lambda ratio: ratio, "sqrt": math.sqrt, "none": lambda ratio: 1.0}
GRID = (0.2, 0.4, 0.6, 0.8, 1.0)  # the equal times at which the curves are compared, as fractions of the fastest
Point = tuple[float, float]  # (seconds since the stage began, val accuracy of that epoch)


def train_configs(
    configs: list[list[int]], epochs: int, batch: int, lr: float, data: tuple[Split, Split, Normalizer]
) -> list[Point]:
    """Train each config in turn as a trial does; every epoch's (time since the start, val accuracy)."""
    train, val, normalize = data
    points: list[Point] = []
    start = time.perf_counter()

    def on_epoch(stats: EpochStats) -> None:
        points.append((time.perf_counter() - start, float(stats.val_acc)))

    for config in configs:
        seed_everything(SEED)
        model = MLP(config)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
        fit(model, optimizer, None, train, val, normalize, epochs, batch, SEED, on_epoch=on_epoch, verbose=False)
    return points


def best_so_far(points: list[Point], at: float) -> float | None:
    """The best val accuracy known ``at`` seconds (a search keeps its best trial); None before the first epoch."""
    known = [acc for seconds, acc in points if seconds <= at]
    return max(known) if known else None


def latest(points: list[Point], at: float) -> float | None:
    """The val accuracy of the last epoch done ``at`` seconds (a retrain keeps its last model); None before it."""
    known = [acc for seconds, acc in points if seconds <= at]
    return known[-1] if known else None


def first_reach(points: list[Point], quality: float) -> float | None:
    """Seconds until the first epoch with val accuracy >= ``quality``; None if never."""
    return next((seconds for seconds, acc in points if acc >= quality - 1e-9), None)


def table(
    rows: dict[str, list[Point]], lrs: dict[str, float], qualities: list[float], value: Callable[..., float | None]
) -> list[str]:
    """A markdown table of the curves: one row per (batch, scaling), ``value`` sampled at equal times."""
    horizon = min(points[-1][0] for points in rows.values())
    grid = [fraction * horizon for fraction in GRID]
    what = "best" if value is best_so_far else "val acc"
    header = (
        f"| batch, lr | wall | {what} at the end | "
        + " | ".join(f"first ≥ {q:.2f}" for q in qualities)
        + " | "
        + " | ".join(f"{what} at {fmt(t)}" for t in grid)
        + " |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for label, points in rows.items():
        reach = " | ".join(fmt(first_reach(points, q)) for q in qualities)
        curve = " | ".join(f"{acc:.4f}" if (acc := value(points, t)) is not None else "—" for t in grid)
        end = value(points, points[-1][0])
        lines.append(f"| {label}, lr {lrs[label]:.3g} | {fmt(points[-1][0])} | {end:.4f} | {reach} | {curve} |")
    return lines


def main() -> None:
    """Both stages at every batch size and scaling rule; the tables to stdout, progress to stderr."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--lr", type=float, default=LR, help="the learning rate at --lr-batch")
    parser.add_argument("--lr-batch", type=int, default=128)
    parser.add_argument("--scaling", nargs="+", choices=sorted(SCALING), default=["linear"])
    parser.add_argument("--stages", nargs="+", choices=["trials", "final"], default=["trials", "final"])
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="epochs per trial")
    parser.add_argument("--final-epochs", type=int, default=16)
    parser.add_argument("--final-config", help="the retrained layer sizes, e.g. 1024-256 (default: the trials' best)")
    parser.add_argument("--quality", type=float, nargs="*", default=[0.70, 0.75])
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--train-size", type=int, default=SVHN_TRAIN_SIZE)
    parser.add_argument("--test-size", type=int, default=SVHN_TEST_SIZE)
    parser.add_argument("--data-root", default=str(DATA_ROOT))
    parser.add_argument("--json", type=Path, help="write every row's epochs (seconds, val accuracy) here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    source = SyntheticSource(args.data_root, train_size=args.train_size, test_size=args.test_size)
    data = (*source.train_val(SEED), source.normalizer())
    rules = [(batch, rule) for rule in args.scaling for batch in args.batch_sizes]
    lrs = {f"{batch} ({rule})": args.lr * SCALING[rule](batch / args.lr_batch) for batch, rule in rules}
    curves: dict[str, dict[str, list[Point]]] = {}
    output = [f"Machine: {machine(torch.device('cpu'))}", f"Command: python {' '.join(sys.argv)}", ""]

    def stage(title: str, configs: list[list[int]], epochs: int, value: Callable[..., float | None]) -> None:
        curves[title] = {}
        for (batch, _), label in zip(rules, lrs, strict=True):
            print(f"... {title}: batch {label}, lr {lrs[label]:.3g}", file=sys.stderr, flush=True)
            curves[title][label] = train_configs(configs, epochs, batch, lrs[label], data)
        output.extend([f"{title} ({len(data[0])} train, {len(data[1])} val rows):", ""])
        output.extend([*table(curves[title], lrs, args.quality, value), ""])

    reference = f"{args.lr_batch} ({args.scaling[0]})"
    if "final" in args.stages and not args.final_config and not ("trials" in args.stages and reference in lrs):
        parser.error("--final-config is needed unless the trials run at --lr-batch (which picks the best config)")
    if "trials" in args.stages:
        stage(f"Trials: the 8 configs, {args.epochs} epochs each", list(CONFIGS), args.epochs, best_so_far)
    if "final" in args.stages:
        final = [int(width) for width in args.final_config.split("-")] if args.final_config else None
        if final is None:  # the config whose last epoch scored best at the reference batch
            (points,) = [row[reference] for row in curves.values()]
            last = [points[(i + 1) * args.epochs - 1][1] for i in range(len(CONFIGS))]
            final = CONFIGS[last.index(max(last))]
        stage(f"Final retrain: {name(final)}, {args.final_epochs} epochs", [final], args.final_epochs, latest)
    output.append(load_note())
    print("\n".join(output))
    if args.json:
        args.json.write_text(json.dumps({"lr": lrs, "curves": curves}, indent=1))


if __name__ == "__main__":
    main()
