"""Regenerate the README's figure: a default sweep, run now, on the synthetic data set.

    python docs/make_figures.py                      # about 2-5 minutes on 2 CPU cores
    python docs/make_figures.py --train-size 73257 --test-size 26032   # SVHN's sizes, longer

It runs ``python -m svhn_sweep --multirun data=synthetic`` with every other setting at its default (search space,
trials, epochs, pruner, final retrain) in a scratch folder, then puts two of the figures that sweep drew itself
(``plots/optimization_history.png`` and ``plots/confusion_matrix.png``) side by side in ``docs/sweep_synthetic.png``,
titled with the data set, its sizes and the test accuracy, and prints the caption's facts. The data set is the
procedural synthetic one (``data=synthetic``), never SVHN: the figure says so in its title. It is a picture of what
a sweep produces, not a measurement; the command's wall time depends on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.image import imread

DOCS = Path(__file__).resolve().parent
FIGURE = DOCS / "sweep_synthetic.png"
PANELS = ("optimization_history.png", "confusion_matrix.png")


def run_sweep(workdir: Path, data_root: Path, train_size: int, test_size: int) -> Path:
    """A default sweep on the synthetic set of the given sizes; returns its folder."""
    command = [
        sys.executable,
        "-m",
        "svhn_sweep",
        "--multirun",
        "data=synthetic",
        f"data.root={data_root}",
        f"data.train_size={train_size}",
        f"data.test_size={test_size}",
    ]
    print("+", " ".join(command[1:]), flush=True)
    subprocess.run(command, cwd=workdir, check=True)
    (sweep_dir,) = (workdir / "outputs" / "sweeps").iterdir()
    return sweep_dir


def compose(sweep_dir: Path, title: str, out: Path) -> None:
    """The sweep's own two figures side by side, under one title, as one PNG."""
    panels = [imread(sweep_dir / "plots" / name) for name in PANELS]
    height = max(panel.shape[0] for panel in panels)
    width = sum(panel.shape[1] for panel in panels)
    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi + 0.5), dpi=dpi, layout="constrained")
    axes = fig.subplots(1, len(panels), width_ratios=[panel.shape[1] for panel in panels])
    for ax, panel in zip(axes, panels, strict=True):
        ax.imshow(panel)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=12)
    fig.savefig(out, dpi=dpi)


def main() -> None:
    """Run the sweep, compose the figure, print what its caption needs."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--train-size", type=int, default=12000, help="synthetic train file rows (default 12000)")
    parser.add_argument("--test-size", type=int, default=4000, help="synthetic test file rows (default 4000)")
    parser.add_argument("--data-root", type=Path, help="where the synthetic set is generated (default: scratch)")
    parser.add_argument("--out", type=Path, default=FIGURE, help=f"the PNG (default {FIGURE.relative_to(DOCS.parent)})")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="svhn_sweep_figures_") as scratch:
        workdir = Path(scratch)
        data_root = (args.data_root or workdir / "data").resolve()
        sweep_dir = run_sweep(workdir, data_root, args.train_size, args.test_size)
        final = json.loads((sweep_dir / "final" / "metrics.json").read_text())
        test_accuracy = final["test_accuracy"]
        title = (
            f"A default sweep on the synthetic data set (data=synthetic, not SVHN): {args.train_size} train-file "
            f"and {args.test_size} test images; final model's test accuracy {test_accuracy:.3f}"
        )
        compose(sweep_dir, title, args.out)
        print(f"wrote {args.out}: {title}")
        print(json.dumps({key: final.get(key) for key in ("test_accuracy", "trial", "trained_on", "epochs")}))
        print((sweep_dir / "trials.csv").read_text())


if __name__ == "__main__":
    main()
