"""What the commands that read a sweep folder share on their command lines (``svhn-sweep-report``,
``svhn-sweep-predict``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from svhn_sweep.constants import STUDY_FILE


def add_final_option(cli: argparse.ArgumentParser) -> None:
    """``--final NAME``: read another final step of the sweep folder than the one its study records."""
    cli.add_argument(
        "--final",
        metavar="NAME",
        help="the final step to read, a folder of SWEEP_DIR (final, final-2, ...); default: the one the study "
        "records, the newest that finished",
    )


def missing_study(sweep_dir: Path) -> str:
    """The message for a ``study.yaml`` whose study is not in its storage."""
    return f"the study named in {sweep_dir / STUDY_FILE} is not in its storage (deleted, or another database)"
