"""Pruned versus unpruned sweep, same seed and trial count: epochs trained, wall time, best val accuracy.

    python benchmarks/pruning.py                       # 20 trials x 8 epochs on 20,000 synthetic images
    python benchmarks/pruning.py --pruners none median hyperband --trials 30

Each sweep is the real command (``python -m svhn_sweep --multirun data=synthetic ...``) in a fresh folder;
the figures come from its Optuna study. The data set is the procedural stand-in, not SVHN.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from optuna.trial import TrialState

from svhn_sweep.sweep.study import StudyRef

REPO = Path(__file__).resolve().parent.parent


def run_sweep(pruner: str, args: argparse.Namespace) -> dict[str, object]:
    """Run one sweep with ``pruner`` in a fresh folder and return its line of the table."""
    workdir = Path(tempfile.mkdtemp(prefix=f"pruning-{pruner}-"))
    pruner_override = "sweep.pruner=none" if pruner == "none" else f"sweep/pruner={pruner}"
    command = [
        sys.executable,
        "-m",
        "svhn_sweep",
        "--multirun",
        "data=synthetic",
        f"data.root={args.data_root}",
        f"data.train_size={args.train_size}",
        f"data.test_size={args.test_size}",
        f"trainer.epochs={args.epochs}",
        f"hydra.sweeper.n_trials={args.trials}",
        f"seed={args.seed}",
        "final.enabled=false",
        pruner_override,
    ]
    start = time.perf_counter()
    subprocess.run(command, cwd=workdir, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    (sweep_dir,) = (workdir / "outputs" / "sweeps").iterdir()
    trials = StudyRef.from_sweep_dir(sweep_dir).load().trials
    return {
        "pruner": pruner,
        "trials": len(trials),
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "epochs": sum(len(t.intermediate_values) for t in trials),
        "wall_s": round(wall, 1),
        "best_val_acc": max(t.value for t in trials if t.state == TrialState.COMPLETE),
    }


def main() -> None:
    """Run one sweep per pruner and print the table, each against the first."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pruners", nargs="+", default=["none", "median"])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-size", type=int, default=20000)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data-root", default=str(REPO / "data" / "synthetic"))
    args = parser.parse_args()

    table = pd.DataFrame([run_sweep(pruner, args) for pruner in args.pruners]).set_index("pruner")
    baseline = table.loc[args.pruners[0]]
    table["epochs_%"] = (100 * table["epochs"] / baseline["epochs"]).round(1)
    table["wall_%"] = (100 * table["wall_s"] / baseline["wall_s"]).round(1)
    table["best_vs_base_pts"] = (100 * (table["best_val_acc"] - baseline["best_val_acc"])).round(2)
    print(
        f"Synthetic data set (not SVHN), {args.train_size} train images ({args.trials} trials x "
        f"{args.epochs} epochs, seed {args.seed}); baseline: {args.pruners[0]}"
    )
    print(table.to_markdown())


if __name__ == "__main__":
    main()
