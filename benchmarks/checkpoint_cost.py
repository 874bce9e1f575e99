"""What a per-epoch checkpoint costs: seconds per epoch of the default MLP with and without, on the CPU.

    python benchmarks/checkpoint_cost.py                      # SVHN-sized random pixels, 3 timed epochs each
    python benchmarks/checkpoint_cost.py --repeats 5 --out checkpoint.md

The model, optimizer and scheduler are the default config's (``model=mlp optimizer=sgd scheduler=step``), built as
a run builds them, trained by ``fit`` at ``trainer.batch_size`` on the train/val split of an SVHN-sized train file
(random pixels: an epoch's time does not depend on them). Rows:

1. seconds per epoch without checkpoints: the median time between the ends of consecutive epochs (training pass
   and val), after a first epoch that is not timed;
2. the same with a checkpoint written after every epoch, as every run writes it (``checkpoint.pt``, atomically,
   flushed to disk), into ``--dir`` (default: a temporary folder in the current one, the disk a sweep writes to);
3. writing one checkpoint of the trained state alone (median of ``--repeats`` writes), with its size;
4. row 3 as a fraction of row 1: what a checkpoint adds to an epoch (target: under 5 %). Rows 1 and 2 differ by
   about as much, but each carries the noise of a whole epoch.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the checkout's package and these benchmarks, installed or not

from benchmarks.bench import random_train_file, train_val  # noqa: E402
from benchmarks.table import Bench, machine, median_seconds  # noqa: E402
from svhn_sweep.constants import CHECKPOINT_FILE, SVHN_TRAIN_SIZE  # noqa: E402
from svhn_sweep.core.checkpoint import Checkpoints, save_checkpoint  # noqa: E402
from svhn_sweep.core.data import Normalizer, Split  # noqa: E402
from svhn_sweep.core.train import fit  # noqa: E402
from svhn_sweep.sweep.config import CONFIG_DIR, register_configs  # noqa: E402
from svhn_sweep.sweep.training import build_training  # noqa: E402


def default_config() -> DictConfig:
    """The default run's config (on the CPU); only its model, optimizer, scheduler and batch size are used."""
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR):
        return compose(config_name="train", overrides=["data=synthetic", "trainer.device=cpu"])


class Run:
    """The default config trained for 1 + ``repeats`` epochs on one split, with or without checkpoints."""

    def __init__(self, cfg: DictConfig, train: Split, val: Split, repeats: int, folder: Path) -> None:
        self.cfg, self.train, self.val, self.repeats, self.folder = cfg, train, val, repeats, folder
        self.trained: tuple = ()  # the model, optimizer and scheduler of the last run, for the write row

    def epoch_seconds(self, checkpointed: bool) -> tuple[float, str]:
        """Median seconds from one epoch's end to the next's (the checkpoint written in between, if any)."""
        torch.manual_seed(self.cfg.seed)
        model, optimizer, scheduler = build_training(self.cfg, torch.device("cpu"))
        ends: list[float] = []
        checkpoints = Checkpoints(self.folder / CHECKPOINT_FILE, "benchmark") if checkpointed else None
        fit(
            model,
            optimizer,
            scheduler,
            self.train,
            self.val,
            Normalizer(self.cfg.data.mean, self.cfg.data.std),
            1 + self.repeats,
            self.cfg.trainer.batch_size,
            self.cfg.seed,
            on_epoch=lambda _: ends.append(time.perf_counter()),
            checkpoints=checkpoints,
            verbose=False,
        )
        self.trained = (model, optimizer, scheduler)
        intervals = [later - earlier for earlier, later in zip(ends, ends[1:], strict=False)]
        return statistics.median(intervals), f"median of {len(intervals)} epochs after the first"

    def write_seconds(self) -> tuple[float, str]:
        """Median seconds of writing the last trained state's checkpoint, as ``fit`` writes it after an epoch."""
        model, optimizer, scheduler = self.trained
        checkpoints = Checkpoints(self.folder / CHECKPOINT_FILE, "benchmark")
        generator = torch.Generator().manual_seed(0)
        seconds = median_seconds(
            lambda: save_checkpoint(checkpoints, [], model, optimizer, scheduler, generator), self.repeats
        )
        size = checkpoints.path.stat().st_size / 2**20
        return seconds, f"{size:.1f} MiB, atomic (temporary file, fsync, rename), into {self.folder}"


def run(args: argparse.Namespace) -> str:
    """Measure the rows and return the report."""
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = default_config()
    train, val = train_val(random_train_file(args.train_size))
    header = "\n".join(
        [
            f"svhn_sweep checkpoint cost, {datetime.datetime.now().isoformat(timespec='seconds')}",
            f"Machine: {machine(torch.device('cpu'))}",
            f"Data: random uint8 pixels of SVHN's shapes (timing only): {len(train)} train + {len(val)} val",
            f"Model: the default config's, model.hidden_sizes={list(cfg.model.hidden_sizes)}, optimizer "
            f"{cfg.optimizer._target_}, scheduler {cfg.scheduler._target_}, batch {cfg.trainer.batch_size}",
            f"Command: python benchmarks/checkpoint_cost.py {' '.join(sys.argv[1:])}",
        ]
    )
    bench = Bench(torch.device("cpu"), header, Path(args.out) if args.out else None)
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="checkpoint-cost-") as folder:
        timed = Run(cfg, train, val, args.repeats, Path(folder))
        bench.measure("epoch", "fit, default MLP, no checkpoints; 1 epoch", partial(timed.epoch_seconds, False))
        bench.measure(
            "epoch_ckpt", "the same, checkpoint.pt after every epoch; 1 epoch", partial(timed.epoch_seconds, True)
        )
        bench.measure("ckpt", "one checkpoint of the trained state, written alone", timed.write_seconds)
    epoch, with_checkpoints, write = (bench.value(key) for key in ("epoch", "epoch_ckpt", "ckpt"))
    if epoch and write is not None:
        note = "" if with_checkpoints is None else f"row 2 / row 1 - 1: {with_checkpoints / epoch - 1:+.1%}"
        bench.measure(
            "ckpt_cost",
            "a checkpoint's cost as a fraction of an epoch (row 3 / row 1)",
            lambda: (write / epoch, note),
            kind="fraction",
        )
    return bench.report()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-size", type=int, default=SVHN_TRAIN_SIZE, help="rows of the train file (80 %% train)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per row (after one untimed), and writes")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, all cores)")
    parser.add_argument("--dir", default=".", help="where the checkpoints are written (a temporary folder in it)")
    parser.add_argument("--out", help="also write the report (markdown) to this file, updated after every row")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Print the report."""
    print(run(parse_args(argv)))


if __name__ == "__main__":
    main()
