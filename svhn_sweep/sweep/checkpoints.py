"""Which checkpoint a job writes and which it may continue: the sweep's side of :mod:`svhn_sweep.core.checkpoint`.

A job continues, in this order: the ``checkpoint.pt`` in its own run folder (a SLURM job requeued after a
preemption runs the same trial in the same folder; a single run given a fixed ``hydra.run.dir``), else the one in
``sweep.resume_from`` (the sweeper's retry of an interrupted trial, whose folder it names), else the folder the
caller names (the final step's, interrupted in an earlier command). Only the state of a run of the same config
is continued: the checkpoint holds a fingerprint of the composed config without the keys that change no number
of the run up to the saved epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from svhn_sweep.constants import CHECKPOINT_FILE
from svhn_sweep.core.checkpoint import Checkpoints

log = logging.getLogger(__name__)

# Left out of the fingerprint. Whole groups: the link to the study (trial number, slot, pruner, resume_from: a
# retried trial has another number and slot) and the tracker. Single keys: where the data lives (not what it is),
# how the run is logged, what it keeps, its device (the checkpoint records the device type it trained on, which
# must match), its thread count (the sweeper shares the cores out by n_jobs: a retry in a command with other
# n_jobs is the same run, though not bit for bit), the final step's other settings, and trainer.epochs: the
# epochs before the saved one do not depend on how many follow, except through a scheduler's length (cosine's
# T_max), which is in the fingerprint as resolved. A longer run may thus continue a shorter one's checkpoint.
IGNORED_GROUPS = ("hydra", "sweep", "logger")
IGNORED_KEYS = {
    "data": ("root", "download"),
    "trainer": ("epochs", "quiet", "keep_checkpoints", "device", "num_threads"),
    "final": ("enabled", "top_k", "select", "epochs"),
}


def fingerprint(cfg: DictConfig) -> str:
    """A digest of what a run trains: the resolved config without :data:`IGNORED_GROUPS` and :data:`IGNORED_KEYS`."""
    values = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(values, dict)
    for group in IGNORED_GROUPS:
        values.pop(group, None)
    for group, keys in IGNORED_KEYS.items():
        for key in keys:
            (values.get(group) or {}).pop(key, None)
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def run_checkpoints(cfg: DictConfig, run_dir: Path, elsewhere: str | Path | None = None) -> Checkpoints:
    """``run_dir``'s checkpoint, continuing its own, else ``sweep.resume_from``'s, else ``elsewhere``'s."""
    folders = [run_dir]
    for other in (cfg.sweep.get("resume_from"), elsewhere):
        if other is None or Path(other).resolve() == run_dir.resolve():
            continue
        if not Path(other).is_dir():
            log.warning("Not resuming from %s: there is no such folder", other)
        elif (Path(other) / CHECKPOINT_FILE).is_file():
            folders.append(Path(other))
        else:  # interrupted before its first epoch ended
            log.info("Nothing to resume in %s: it has no %s", other, CHECKPOINT_FILE)
    resume_from = tuple(folder / CHECKPOINT_FILE for folder in folders)
    return Checkpoints(run_dir / CHECKPOINT_FILE, fingerprint(cfg), resume_from)


def finished(cfg: DictConfig, checkpoints: Checkpoints) -> None:
    """The run's results are written: its checkpoint goes, unless ``trainer.keep_checkpoints``."""
    if not cfg.trainer.keep_checkpoints:
        checkpoints.path.unlink(missing_ok=True)
