"""Search spaces at the same budget: the default sweep (trials x epochs, pruner, final retrain) per space and
sampler seed; best val accuracy of the trials and test accuracy of the retrained best, medians over the seeds.

    python benchmarks/search_spaces.py                                  # search=mlp vs search=mlp_layers, 3 seeds
    python benchmarks/search_spaces.py --train-size 5000 --test-size 2000 sweep.pruner=none

Only the sampler's seed (``hydra.sweeper.sampler.seed``) changes between seeds: the split, the initialisation
and the batch order stay those of ``seed``. The data set is the procedural stand-in, not SVHN.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's package, installed or not

from benchmarks.sweeps import add_sweep_arguments, load_note, medians, run_sweep, seed_overrides  # noqa: E402
from svhn_sweep.constants import SVHN_TEST_SIZE, SVHN_TRAIN_SIZE  # noqa: E402


def main() -> None:
    """One default sweep per space and seed; the table of runs, then the medians."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spaces", nargs="+", default=["mlp", "mlp_layers"])
    add_sweep_arguments(parser, train_size=SVHN_TRAIN_SIZE, test_size=SVHN_TEST_SIZE)
    parser.set_defaults(seeds=[0, 1, 2])
    args = parser.parse_intermixed_args()  # overrides may come before or after the options

    runs = []
    for seed in args.seeds:
        for space in args.spaces:
            overrides = [f"search={space}", *seed_overrides(args, seed)]
            runs.append({"space": space, "seed": seed, **run_sweep(f"{space}-{seed}", overrides)})
            print(pd.DataFrame(runs[-1:]).to_markdown(index=False), flush=True)
    table = pd.DataFrame(runs)
    print(
        f"\nSynthetic data set (not SVHN), {args.train_size} train / {args.test_size} test images, sampler seeds "
        f"{args.seeds}, overrides {args.overrides or 'none'}; {load_note()} at the end"
    )
    print(table.drop(columns=["folder"]).to_markdown(index=False))
    print(medians(table, "space", ["best_val_acc", "test_acc", "epochs", "wall_s"]).to_markdown())


if __name__ == "__main__":
    main()
