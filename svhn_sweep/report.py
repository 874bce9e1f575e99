"""``svhn-sweep-report SWEEP_DIR``: the trials of a sweep, best first, the parameter importances and the final
test accuracy, at any point of the sweep's life (running, interrupted, failed or finished); exports and figures
on request. The end of every ``--multirun`` prints the same summary.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import optuna

from svhn_sweep.core.errors import UserError
from svhn_sweep.review.cli import add_final_option, missing_study
from svhn_sweep.review.plots import write_plots
from svhn_sweep.review.results import open_study, trials_table
from svhn_sweep.review.summary import printable, summary


def _pair(text: str) -> tuple[int, int]:
    """``--pair 6,8``: a (predicted, truth) pair of digits."""
    try:
        predicted, true = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected PREDICTED,TRUTH as two digits, e.g. 6,8; got {text!r}") from None
    if not (0 <= predicted <= 9 and 0 <= true <= 9):
        raise argparse.ArgumentTypeError(f"classes are the digits 0-9; got {text!r}")
    return predicted, true


def parser() -> argparse.ArgumentParser:
    """The command line of ``svhn-sweep-report``."""
    cli = argparse.ArgumentParser(
        prog="svhn-sweep-report",
        description="The trials of a sweep, best first, the "
        "parameter importances and the final test accuracy; exports and figures.",
    )
    cli.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR", help="a sweep folder, outputs/sweeps/<date_time>")
    cli.add_argument("--top", type=int, default=10, metavar="N", help="trials printed (default 10)")
    cli.add_argument("--csv", type=Path, metavar="PATH", help="write the whole trials table as CSV")
    cli.add_argument(
        "--parquet",
        type=Path,
        metavar="PATH",
        help="write the whole trials table as Parquet (needs pyarrow: pip install 'svhn-sweep[parquet]')",
    )
    cli.add_argument(
        "--markdown", type=Path, metavar="PATH", help="write the whole trials table, without run folders, as Markdown"
    )
    cli.add_argument("--plots", action="store_true", help="(re)draw the figures into SWEEP_DIR/plots/")
    cli.add_argument(
        "--pair",
        type=_pair,
        action="append",
        default=[],
        metavar="PRED,TRUTH",
        help="also draw the error gallery of this (predicted, truth) pair, e.g. 6,8; implies --plots",
    )
    add_final_option(cli)
    return cli


def show(text: str) -> None:
    """Print ``text``; a reader that stopped early (``| head``) is no error, and the exports asked for still run.

    Python's own recipe: once the pipe is gone, stdout points at devnull, so no second error comes at exit.
    """
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point. A mistake (not a sweep folder, no pyarrow, no final retrain for --pair) ends it with
    one line and exit code 2; argparse's usage is left out, since the arguments themselves were fine.
    """
    cli = parser()
    args = cli.parse_args(argv)

    def fail(message: str) -> NoReturn:
        cli.exit(2, f"{cli.prog}: error: {message}\n")

    if args.parquet and importlib.util.find_spec("pyarrow") is None:
        fail("--parquet needs pyarrow, which is not installed: pip install 'svhn-sweep[parquet]'")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = open_study(args.sweep_dir)
    except (FileNotFoundError, UserError) as error:  # not a sweep folder; a storage that cannot be used
        fail(str(error))
    except KeyError:
        fail(missing_study(args.sweep_dir))
    trials = trials_table(study, args.sweep_dir)
    show(summary(study, trials, args.sweep_dir, args.top, final_dir=args.final))
    if args.csv:
        trials.to_csv(args.csv, index=False)
    if args.parquet:
        trials.to_parquet(args.parquet, index=False)
    if args.markdown:
        args.markdown.write_text(printable(trials).to_markdown(index=False) + "\n")
    for path in filter(None, (args.csv, args.parquet, args.markdown)):
        show(f"Wrote {path}")
    if args.plots or args.pair:
        try:
            paths = write_plots(args.sweep_dir, study, pairs=args.pair, final_dir=args.final)
        except (FileNotFoundError, UserError) as error:
            fail(str(error))
        show(f"Wrote {len(paths)} figures into {paths[0].parent}: {', '.join(p.name for p in paths)}")


if __name__ == "__main__":
    main()
