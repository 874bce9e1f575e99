"""Checks that run before the first trial, so a bad input costs seconds, not a sweep."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from svhn_sweep.core.errors import UserError
from svhn_sweep.sweep.config import data_source, validate
from svhn_sweep.sweep.loggers import run_logger

log = logging.getLogger(__name__)


def check_output_dir(path: str | Path) -> None:
    """Create a folder now, with a clear error if something is in the way."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"Cannot create the output folder {path} ({error.strerror}: {error.filename}). "
            "Move what is in the way, or choose another folder with hydra.sweep.dir "
            "(and hydra.sweeper.storage)."
        ) from None


def preflight(config: DictConfig, folders: list[Path]) -> None:
    """Validate the config, create the output folders, check the experiment tracker's package, and fetch or
    generate the data once for all trials.
    """
    validate(config)
    for folder in folders:
        check_output_dir(folder)
    if (logger := run_logger(config)) is not None:
        logger.check()
    log.info("Checking the data before the first trial")
    data_source(config).ensure_files()
