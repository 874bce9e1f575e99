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
import pandas as pd

from svhn_sweep.errors import UserError
from svhn_sweep.results import final_metrics, importance_table, open_study, trials_table
from svhn_sweep.study import STUDY_FILE


def summary(study: optuna.Study, trials: pd.DataFrame, sweep_dir: Path, top: int = 10) -> str:
    """The report as text: the ``top`` of the study's ``trials`` (its :func:`trials_table`) by val accuracy, the
    parameter importances, and the final result of the sweep folder.
    """
    states = ", ".join(f"{n} {state}" for state, n in trials["state"].value_counts().items())
    lines = [f"Trials of study {study.study_name} (best first; all of its trials, across resumes and workers): "
             f"{len(trials)} trials{': ' + states if states else ''}"]
    if len(trials):
        lines.append(printable(trials).head(top).to_string(index=False, float_format="{:.4g}".format))
    importance = importance_table(study)
    lines += ["", "Parameter importances (PED-ANOVA over the complete trials):",
              importance.attrs["note"] if importance.empty else importance.to_string(index=False, float_format="%.3f")]
    lines += ["", final_line(final_metrics(sweep_dir), trials, sweep_dir)]
    return "\n".join(lines)


def printable(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials table for people: without the long run-folder paths, and blank where a trial has no value."""
    table = trials.drop(columns=["run_dir"])
    return table.astype(object).where(table.notna(), "")


def final_line(final: pd.Series | None, trials: pd.DataFrame, sweep_dir: Path) -> str:
    if final is None:
        return (f"No final retrain in {sweep_dir} (yet): it runs when the sweep finishes, in the folder of the "
                "worker that finishes it.")
    val = trials.set_index("trial")["val_accuracy"].get(final.get("trial"))
    origin = f"trial {final['trial']}, val accuracy {val:.4f}" if val is not None else "the best trial"
    return (f"Best config ({origin}) retrained on {final['trained_on']} ({final['train_size']} images) and scored "
            f"once on the test file ({final['test_size']} images): test accuracy {final['test_accuracy']:.4f}")


def _pair(text: str) -> tuple[int, int]:
    try:
        predicted, true = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected PREDICTED,TRUTH as two digits, e.g. 6,8; got {text!r}") from None
    if not (0 <= predicted <= 9 and 0 <= true <= 9):
        raise argparse.ArgumentTypeError(f"classes are the digits 0-9; got {text!r}")
    return predicted, true


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="svhn-sweep-report", description="The trials of a sweep, best first, the "
                                  "parameter importances and the final test accuracy; exports and figures.")
    cli.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR", help="a sweep folder, outputs/sweeps/<date_time>")
    cli.add_argument("--top", type=int, default=10, metavar="N", help="trials printed (default 10)")
    cli.add_argument("--csv", type=Path, metavar="PATH", help="write the whole trials table as CSV")
    cli.add_argument("--parquet", type=Path, metavar="PATH",
                     help="write the whole trials table as Parquet (needs pyarrow: pip install 'svhn-sweep[parquet]')")
    cli.add_argument("--markdown", type=Path, metavar="PATH",
                     help="write the whole trials table, without run folders, as Markdown")
    cli.add_argument("--plots", action="store_true", help="(re)draw the figures into SWEEP_DIR/plots/")
    cli.add_argument("--pair", type=_pair, action="append", default=[], metavar="PRED,TRUTH",
                     help="also draw the error gallery of this (predicted, truth) pair, e.g. 6,8; implies --plots")
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
    except FileNotFoundError as error:
        fail(str(error))
    except KeyError:
        fail(f"the study named in {args.sweep_dir / STUDY_FILE} is not in its storage (deleted, or another database)")
    trials = trials_table(study)
    show(summary(study, trials, args.sweep_dir, args.top))
    if args.csv:
        trials.to_csv(args.csv, index=False)
    if args.parquet:
        trials.to_parquet(args.parquet, index=False)
    if args.markdown:
        args.markdown.write_text(printable(trials).to_markdown(index=False) + "\n")
    for path in filter(None, (args.csv, args.parquet, args.markdown)):
        show(f"Wrote {path}")
    if args.plots or args.pair:
        from svhn_sweep.plots import write_plots  # imports torch (for the test images): not for a text report

        try:
            paths = write_plots(args.sweep_dir, study, pairs=args.pair)
        except (FileNotFoundError, UserError) as error:
            fail(str(error))
        show(f"Wrote {len(paths)} figures into {paths[0].parent}: {', '.join(p.name for p in paths)}")


if __name__ == "__main__":
    main()
