"""The sweep rows: what a real multirun costs per trial besides training, with the basic and joblib launchers.

Each measurement runs ``python -m svhn_sweep --multirun`` as a user types it, in a subprocess (the only rows that
need Hydra and Optuna, which this process never imports), and reads when each trial wrote its ``metrics.json``
and how long its epochs took. Per trial: the time between consecutive trials' ends minus the time inside their
epochs, so that the once-per-sweep cost (Python, torch and Hydra start-up, the first data load) stays out of it;
that cost is shown beside it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import svhn_sweep
from svhn_sweep.constants import METRICS_FILE, SVHN_TEST_SIZE, SVHN_TRAIN_SIZE

TRIALS = 8  # one-epoch trials per sweep
# The folder that holds the svhn_sweep this process imports: the sweeps run the same package, installed or not.
CHECKOUT = Path(svhn_sweep.__file__).resolve().parent.parent


@dataclass(frozen=True)
class Launcher:
    """A Hydra launcher as the sweep command chooses it, and how many trials it runs at once."""

    name: str
    overrides: tuple[str, ...]
    n_jobs: int


LAUNCHERS = (
    Launcher("basic", (), 1),
    Launcher("joblib", ("hydra/launcher=joblib", "hydra.sweeper.n_jobs=2"), 2),
)


@contextmanager
def multirun(root: Path, overrides: list[str]) -> Iterator[tuple[Path, float, float]]:
    """Run ``python -m svhn_sweep --multirun data=synthetic OVERRIDES`` in a fresh folder, as a user types it.

    The folder's ``data/synthetic`` links to ``root``: each override is stored with every trial, so the command
    carries only what the measurement needs. Yields the sweep folder (until the block ends), when the command
    started (epoch seconds, to compare with file times) and its wall seconds.
    """
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        (Path(tmp) / "data").mkdir()
        (Path(tmp) / "data" / "synthetic").symlink_to(root)
        command = [sys.executable, "-m", "svhn_sweep", "--multirun", "data=synthetic", *overrides]
        pythonpath = os.pathsep.join(filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH")]))
        started = time.time()
        result = subprocess.run(
            command, cwd=tmp, env={**os.environ, "PYTHONPATH": pythonpath}, capture_output=True, text=True
        )
        wall = time.time() - started
        if result.returncode != 0:
            raise RuntimeError(f"multirun failed: {result.stderr[-2000:]}")
        (sweep_dir,) = (Path(tmp) / "outputs" / "sweeps").iterdir()
        yield sweep_dir, started, wall


def sweep_timeline(root: Path, sizes: tuple[int, int], launcher: Launcher) -> tuple[float, list[float], list[float]]:
    """Run one multirun of ``TRIALS`` one-epoch trials: its wall seconds, and per trial its end and epoch seconds.

    A trial's end is when its metrics file was written, in seconds from the start.
    """
    full_size = sizes == (SVHN_TRAIN_SIZE, SVHN_TEST_SIZE)
    sized = [] if full_size else [f"data.train_size={sizes[0]}", f"data.test_size={sizes[1]}"]
    overrides = [
        *sized,
        "trainer.epochs=1",
        "model.hidden_sizes=[100]",  # the searched layer lists differ 10x in epoch time; overhead does not
        "sweep.pruner=none",
        "final.enabled=false",
        f"hydra.sweeper.n_trials={TRIALS}",
        *launcher.overrides,
    ]
    with multirun(root, overrides) as (sweep_dir, started, wall):
        ends, epochs = [], []
        for number in range(TRIALS):
            metrics_file = sweep_dir / str(number) / METRICS_FILE
            ends.append(metrics_file.stat().st_mtime - started)
            epochs.append(sum(h["seconds"] for h in json.loads(metrics_file.read_text())["history"]))
    return wall, ends, epochs


def per_trial_overhead(root: Path, sizes: tuple[int, int], launcher: Launcher, repeats: int) -> tuple[float, str]:
    """Seconds per trial besides training, median over ``repeats`` multiruns; the once-per-sweep cost in the note.

    Trials run in batches of ``n_jobs`` (the sweeper asks that many at a time) and a batch ends with its
    slowest trial. Per trial: the time between two batches' ends not spent in the later batch's longest
    epoch, over its trials; that is all a trial costs besides training (the sweeper's ask and tell, Hydra's
    job set-up, the job's own). Once per sweep: the rest of the wall time (Python, torch and Hydra start-up,
    the study, the first trial's data load, the closing table, exit).
    """
    per_trial, fixed = [], []
    for _ in range(repeats):
        wall, ends, epochs = sweep_timeline(root, sizes, launcher)
        groups = [range(i, min(i + launcher.n_jobs, TRIALS)) for i in range(0, TRIALS, launcher.n_jobs)]
        done = [max(ends[t] for t in group) for group in groups]
        longest = [max(epochs[t] for t in group) for group in groups]
        per_trial += [(done[b] - done[b - 1] - longest[b]) / len(groups[b]) for b in range(1, len(groups))]
        fixed.append(wall - (done[-1] - done[0]) - longest[0])
    note = (
        f"sweeps of {TRIALS} one-epoch trials: time between trials' ends minus their epochs; plus "
        f"{statistics.median(fixed):.1f} s once per sweep (start-up, study, first data load, exit)"
    )
    return statistics.median(per_trial), note
