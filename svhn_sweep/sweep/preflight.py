"""Checks that run before the first trial, so a bad input costs seconds, not a sweep."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from svhn_sweep.core.errors import UserError
from svhn_sweep.sweep.config import data_source, validate
from svhn_sweep.sweep.loggers import run_logger
from svhn_sweep.sweep.study import StudyRef, sqlite_folder, study_lock

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


def preflight(config: DictConfig, ref: StudyRef, sweep_dir: Path) -> None:
    """Validate the config, check the experiment tracker's package, open the study's storage, create the sweep
    folder, and fetch or generate the data once for all trials: in that order, so that a mistake costs seconds
    and a storage that cannot be used leaves no sweep folder behind.
    """
    validate(config)
    if (logger := run_logger(config)) is not None:
        logger.check()
    if folder := sqlite_folder(ref.storage):
        check_output_dir(folder)
    with study_lock(ref.storage, ref.study_name):  # workers starting together must not race on the schema
        ref.open_storage()
    check_output_dir(sweep_dir)
    log.info("Checking the data before the first trial")
    data_source(config).ensure_files()
