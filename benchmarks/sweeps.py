"""One real sweep in a fresh folder, summarised: what the sweep benchmarks (``pruning.py``, ``search_spaces.py``)
compare. The sweep is the command a user types (``python -m svhn_sweep --multirun data=synthetic ...``), run with
this checkout first on the path; its figures come from its Optuna study and its final retrain.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import pandas as pd
from optuna.trial import TrialState

from svhn_sweep.constants import FINAL_DIR
from svhn_sweep.review.results import run_metrics
from svhn_sweep.sweep.study import StudyRef

REPO = Path(__file__).resolve().parent.parent
DATA_ROOT = REPO / "data" / "synthetic"


def add_sweep_arguments(parser: argparse.ArgumentParser, train_size: int, test_size: int) -> None:
    """The options both sweep benchmarks take: sampler seeds, the synthetic set's sizes and root, more overrides."""
    parser.add_argument("--seeds", nargs="+", type=int, default=[42], help="sampler seeds: one sweep each")
    parser.add_argument("--train-size", type=int, default=train_size)
    parser.add_argument("--test-size", type=int, default=test_size)
    parser.add_argument("--data-root", default=str(DATA_ROOT))
    parser.add_argument(
        "overrides",
        nargs="*",
        help="more overrides for every sweep, before the options: trainer.num_threads=1 --seeds 0",
    )


def seed_overrides(args: argparse.Namespace, seed: int) -> list[str]:
    """The data set of :func:`add_sweep_arguments`, the sampler seed and the extra overrides, as overrides."""
    return [
        f"data.root={args.data_root}",
        f"data.train_size={args.train_size}",
        f"data.test_size={args.test_size}",
        f"hydra.sweeper.sampler.seed={seed}",
        *args.overrides,
    ]


def run_sweep(label: str, overrides: list[str]) -> dict[str, object]:
    """Run ``--multirun data=synthetic OVERRIDES`` in a fresh folder; its trials, epochs, wall time and results."""
    workdir = Path(tempfile.mkdtemp(prefix=f"sweep-{label}-"))
    command = [sys.executable, "-m", "svhn_sweep", "--multirun", "data=synthetic", *overrides]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    subprocess.run(command, cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    (sweep_dir,) = (workdir / "outputs" / "sweeps").iterdir()
    trials = StudyRef.from_sweep_dir(sweep_dir).load().trials
    final = run_metrics(sweep_dir / FINAL_DIR) or {}
    return {
        "trials": len(trials),
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "epochs": sum(len(t.intermediate_values) for t in trials),
        "wall_s": round(wall, 1),
        "best_val_acc": max(t.value for t in trials if t.state == TrialState.COMPLETE),
        "test_acc": final.get("test_accuracy"),
        "folder": str(sweep_dir),
    }


def medians(table: pd.DataFrame, by: str, columns: list[str]) -> pd.DataFrame:
    """The median over seeds of ``columns`` for each value of ``by``, in first-seen order."""
    order = list(dict.fromkeys(table[by]))
    return pd.DataFrame(
        {column: [median(table.loc[table[by] == key, column]) for key in order] for column in columns},
        index=pd.Index(order, name=by),
    )


def load_note() -> str:
    """The load average while measuring: the CPU is shared, so wall times are only indicative."""
    return "load average " + " / ".join(f"{load:.1f}" for load in os.getloadavg())
