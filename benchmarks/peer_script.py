"""The script a competent user writes instead of this package, against the sweep, on the same 8 configs.

The script (:func:`peer`, run as its own process: ``--peer``) is the optuna-examples pattern: the images in memory
as normalised float tensors, a ``DataLoader`` of batch 128 over a ``TensorDataset``, an in-process Optuna study
that enqueues the configs and trains each in turn. The sweep is the command a user types::

    python -m svhn_sweep --multirun data=synthetic ... hydra.sweeper.enqueue=[...the same 8 configs]

Both train the default pyramids ``[100]`` ... ``[512,256,128]`` (MLP, no BatchNorm) with SGD lr 1e-2, momentum
0.9, weight decay 1e-4, no schedule, for 3 epochs without pruning, on the same synthetic set and the same
train/val split (``seed=42``); the sweep keeps its own trainer settings (``trainer.batch_size``, and
``trainer.amp=auto``: bf16 on CUDA and AMX CPUs, where the script, as users write it, stays fp32) unless told
otherwise, and skips its final retrain (the script has none). Each is timed as a whole process, in
alternating order, ``--repeats`` times; every epoch's val accuracy is stamped with the wall-clock time it was
known (the script records it, the sweep's trials log it), which gives the time each first reaches a val
accuracy: time to quality. ``--json`` keeps those timelines.

    python benchmarks/peer_script.py                        # full-size synthetic set, 3 repeats
    python benchmarks/peer_script.py trainer.batch_size=128 # more overrides go to the sweep only
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

from benchmarks.sweeps import DATA_ROOT, load_note, run_sweep, seed_overrides  # noqa: E402
from benchmarks.table import cpu_wait_seconds  # noqa: E402
from svhn_sweep.constants import SVHN_MEAN, SVHN_STD, SVHN_TEST_SIZE, SVHN_TRAIN_SIZE  # noqa: E402
from svhn_sweep.core.data import SyntheticSource  # noqa: E402

CONFIGS = ([100], [256], [512], [1024], [256, 128], [512, 256], [1024, 256], [512, 256, 128])
LR, MOMENTUM, WEIGHT_DECAY, EPOCHS, SEED = 1e-2, 0.9, 1e-4, 3, 42
PEER_BATCH = 128
# A trial's epoch line in its Hydra log: "[2026-11-30 02:07:33,750][svhn_sweep.core.train][INFO] - epoch 1/2 ...".
EPOCH_LINE = re.compile(
    r"^\[(?P<time>[\d-]+ [\d:]+,\d{3})\]\[svhn_sweep\.core\.train\]\[INFO\] - epoch (?P<epoch>\d+)/\d+ .*"
    r"val_acc (?P<val_acc>[\d.]+)"
)

Event = dict[str, float | int]  # one epoch: wall-clock time (s since the epoch of Unix), trial, epoch, val_acc


def peer(data_root: str, train_size: int, test_size: int, timeline: Path) -> None:
    """The user's script: an Optuna study over the configs, each trained from tensors through a DataLoader."""
    import optuna  # what the user's script imports; the timing harness does not need it

    train, val = SyntheticSource(data_root, train_size=train_size, test_size=test_size).train_val(SEED)
    mean, std = torch.tensor(SVHN_MEAN).view(1, 3, 1, 1), torch.tensor(SVHN_STD).view(1, 3, 1, 1)
    train_x, val_x = ((split.images.float() / 255 - mean) / std for split in (train, val))
    loader = DataLoader(TensorDataset(train_x, train.labels), batch_size=PEER_BATCH, shuffle=True)
    events: list[Event] = []

    def objective(trial: optuna.Trial) -> float:
        hidden = [int(width) for width in trial.suggest_categorical("hidden", [name(c) for c in CONFIGS]).split("-")]
        torch.manual_seed(SEED)
        widths = [3 * 32 * 32, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for n_in, n_out in itertools.pairwise(widths):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        model = nn.Sequential(*layers, nn.Linear(widths[-1], 10))
        optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
        for epoch in range(1, EPOCHS + 1):
            model.train()
            for images, labels in loader:
                optimizer.zero_grad()
                F.cross_entropy(model(images), labels).backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                accuracy = (model(val_x).argmax(1) == val.labels).float().mean().item()
            events.append({"time": time.time(), "trial": trial.number, "epoch": epoch, "val_acc": accuracy})
            trial.report(accuracy, epoch)
        return accuracy

    study = optuna.create_study(direction="maximize")
    for config in CONFIGS:
        study.enqueue_trial({"hidden": name(config)})
    study.optimize(objective, n_trials=len(CONFIGS))
    timeline.write_text(json.dumps(events))


def name(config: list[int]) -> str:
    """A config as an Optuna categorical choice (strings, not lists): [512, 256] -> '512-256'."""
    return "-".join(map(str, config))


def run_peer(args: argparse.Namespace, workdir: Path) -> tuple[float, list[Event]]:
    """The script as a whole process: its wall time and its epochs."""
    timeline = workdir / "peer.json"
    command = [sys.executable, __file__, "--peer", str(timeline), *data_options(args)]
    start = time.time()
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.time() - start
    if result.returncode:
        sys.exit(f"the script failed:\n{result.stderr[-3000:]}")
    return wall, [{**e, "time": e["time"] - start} for e in json.loads(timeline.read_text())]


def sweep_overrides(args: argparse.Namespace) -> list[str]:
    """The sweep on the same configs: all 8 enqueued (every searched key fixed), 3 epochs, no pruning, no retrain."""
    fixed = f"model.batchnorm:none,optimizer:sgd,optimizer.lr:{LR},optimizer.weight_decay:{WEIGHT_DECAY},scheduler:none"
    enqueue = ",".join(f"{{model.hidden_sizes:[{','.join(map(str, c))}],{fixed}}}" for c in CONFIGS)
    return [
        f"hydra.sweeper.n_trials={len(CONFIGS)}",
        f"hydra.sweeper.enqueue=[{enqueue}]",
        f"trainer.epochs={EPOCHS}",
        "sweep.pruner=none",
        "final.enabled=false",
        *seed_overrides(args, SEED),
    ]


def run_sweep_timed(args: argparse.Namespace) -> tuple[float, list[Event]]:
    """The sweep as a whole process: its wall time and its epochs, read from the trials' logs."""
    start = time.time()
    result = run_sweep("peer", sweep_overrides(args))
    wall = time.time() - start
    events = []
    for log in Path(str(result["folder"])).glob("*/svhn_sweep.log"):
        for line in log.read_text().splitlines():
            if match := EPOCH_LINE.match(line):
                stamp = datetime.strptime(match["time"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                events.append(
                    {"time": stamp, "trial": int(log.parent.name), "epoch": int(match["epoch"]),
                     "val_acc": float(match["val_acc"])}
                )  # fmt: skip
    return wall, [{**e, "time": e["time"] - start} for e in events]


def time_to(events: list[Event], quality: float) -> float | None:
    """Seconds from the process start to the first epoch with val accuracy >= ``quality``; None if never."""
    times = [e["time"] for e in events if e["val_acc"] >= quality - 1e-9]
    return min(times) if times else None


def data_options(args: argparse.Namespace) -> list[str]:
    """The data set's options, for the script's own process."""
    return ["--data-root", args.data_root, "--train-size", str(args.train_size), "--test-size", str(args.test_size)]


def fmt(seconds: float | None) -> str:
    """A time to quality as the table shows it."""
    return "never" if seconds is None else f"{seconds:.1f} s" if seconds < 100 else f"{seconds:.0f} s"


def main() -> None:
    """Both runs, alternating, ``--repeats`` times; the table to stdout, progress to stderr."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, in alternating order")
    parser.add_argument("--quality", type=float, nargs="*", default=[0.70, 0.75], help="val accuracies to time")
    parser.add_argument("--train-size", type=int, default=SVHN_TRAIN_SIZE)
    parser.add_argument("--test-size", type=int, default=SVHN_TEST_SIZE)
    parser.add_argument("--data-root", default=str(DATA_ROOT))
    parser.add_argument("--json", type=Path, help="write every run's epochs (wall-clock timelines) here")
    parser.add_argument("--peer", type=Path, help=argparse.SUPPRESS)  # internal: be the script, write its epochs
    parser.add_argument("overrides", nargs="*", help="more overrides for the sweep, e.g. trainer.batch_size=128")
    args = parser.parse_args()
    if args.peer:
        return peer(args.data_root, args.train_size, args.test_size, args.peer)

    SyntheticSource(args.data_root, train_size=args.train_size, test_size=args.test_size).load("train")  # untimed
    workdir = Path(tempfile.mkdtemp(prefix="peer-script-"))
    runs: list[dict[str, object]] = []
    header = (
        "| repeat | run | wall | best val acc | "
        + " | ".join(f"first ≥ {q:.2f}" for q in args.quality)
        + " | first ≥ the script's best | ran | CPU contention |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for repeat in range(1, args.repeats + 1):
        order = ("script", "sweep") if repeat % 2 else ("sweep", "script")
        done: dict[str, tuple[float, list[Event]]] = {}
        waits: dict[str, float | None] = {}
        for kind in order:
            print(f"... repeat {repeat}: {kind}", file=sys.stderr, flush=True)
            waited, start = cpu_wait_seconds(), time.perf_counter()
            done[kind] = run_peer(args, workdir) if kind == "script" else run_sweep_timed(args)
            waits[kind] = None if waited is None else (cpu_wait_seconds() - waited) / (time.perf_counter() - start)
        script_best = max(e["val_acc"] for e in done["script"][1])
        for kind in ("script", "sweep"):
            wall, events = done[kind]
            best = max(e["val_acc"] for e in events)
            reach = [time_to(events, q) for q in [*args.quality, script_best]]
            time_to_quality = dict(zip([*map(str, args.quality), "script_best"], reach, strict=True))
            runs.append(
                {"repeat": repeat, "run": kind, "wall_s": wall, "best_val_acc": best, "time_to": time_to_quality}
                | {"epochs": events}
            )
            contention = "" if waits[kind] is None else f"{waits[kind]:.0%}"
            cells = " | ".join(fmt(r) for r in reach)
            ran = "first" if kind == order[0] else "second"
            lines.append(f"| {repeat} | {kind} | {wall:.1f} s | {best:.4f} | {cells} | {ran} | {contention} |")
            print(lines[-1], file=sys.stderr, flush=True)
    lines += ["", summary(runs), load_note()]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


def summary(runs: list[dict[str, object]]) -> str:
    """Medians over repeats, and the target: the sweep reaches the script's best in <= 1/1.5 of its wall time."""
    script_wall = statistics.median(r["wall_s"] for r in runs if r["run"] == "script")
    reached = [r["time_to"]["script_best"] for r in runs if r["run"] == "sweep"]
    if None in reached:
        return f"Median wall: script {script_wall:.1f} s; the sweep missed the script's best in some repeat."
    sweep_wall = statistics.median(r["wall_s"] for r in runs if r["run"] == "sweep")
    sweep_ttq = statistics.median(reached)
    ratio = script_wall / sweep_ttq
    verdict = "met" if ratio >= 1.5 else "MISSED"
    return (
        f"Median wall: script {script_wall:.1f} s, sweep {sweep_wall:.1f} s; "
        f"the sweep reaches the script's best val accuracy in {sweep_ttq:.1f} s (median), "
        f"{ratio:.2f}× faster than the script's wall time (target ≥ 1.5×: {verdict})."
    )


if __name__ == "__main__":
    main()
