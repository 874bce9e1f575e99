"""One trial of a sweep (or one ``python -m svhn_sweep`` run): train a config, return its val accuracy."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

import optuna
import torch
from omegaconf import DictConfig

from svhn_sweep.constants import METRICS_FILE
from svhn_sweep.core import data
from svhn_sweep.core.files import write_json
from svhn_sweep.core.train import DivergedError, EpochStats, history_records
from svhn_sweep.sweep.checkpoints import finished, run_checkpoints
from svhn_sweep.sweep.liveness import beating
from svhn_sweep.sweep.loggers import record_trial
from svhn_sweep.sweep.pruning import StoppedEarly, TrialEndedElsewhere, trial_reporter
from svhn_sweep.sweep.training import fit_config, prepare

log = logging.getLogger(__name__)


def train_and_validate(cfg: DictConfig, output_dir: Path) -> float | tuple[float, int] | StoppedEarly:
    """One trial: train on the train part of the train file, return the last epoch's val accuracy (and the
    model's parameter count when ``sweep.objectives`` asks for it).

    In a sweep, a pruned or diverged trial returns :class:`StoppedEarly` for the sweeper to record, as does one
    ended elsewhere meanwhile (orphaned); outside a sweep, divergence raises. ``metrics.json`` is written in every
    case, with the epochs the trial got through, restored ones included (:mod:`svhn_sweep.sweep.checkpoints`:
    which checkpoint it continues), and its ``clock`` (wall-clock seconds since the epoch): when the task started,
    when its first epoch started (after the data and the model were ready) and when it ended, which is what a
    sweep's per-trial overhead is measured from. Then its checkpoint goes, unless the run is orphaned: its
    trial's retry continues from it.
    """
    start, started_at = time.perf_counter(), time.time()
    source, device = prepare(cfg)
    train, val = source.train_val(cfg.seed)
    report = trial_reporter(cfg.sweep, cfg.trainer.epochs) if len(cfg.sweep.objectives) == 1 else None
    history: list[EpochStats] = []
    restored: list[EpochStats] = []

    def on_resume(epochs: list[EpochStats]) -> None:
        history.extend(epochs)
        restored.extend(epochs)
        if report is not None:
            report.restored(epochs)

    training_at: list[float] = []

    def on_epoch(stats: EpochStats) -> None:
        if not history:
            training_at.append(time.time() - stats.seconds)
        history.append(stats)
        if report is not None:
            report(stats)

    checkpoints = run_checkpoints(cfg, output_dir)
    status, reason, n_params = "complete", None, None
    alive = beating(output_dir, cfg.sweep.heartbeat) if cfg.sweep.heartbeat else contextlib.nullcontext()
    try:
        with alive:
            model, _ = fit_config(cfg, source, device, train, val, on_epoch, checkpoints, on_resume)
        n_params = sum(p.numel() for p in model.parameters())
    except (optuna.TrialPruned, DivergedError) as stop:
        status, reason = ("pruned" if isinstance(stop, optuna.TrialPruned) else "diverged"), str(stop)
    except TrialEndedElsewhere as stop:
        status, reason = "orphaned", f"{stop}; its retry continues from this run's checkpoint"
    write_json(
        output_dir / METRICS_FILE,
        {
            "status": status,
            "reason": reason,
            "val_accuracy": history[-1].val_acc if history else None,
            "epochs": len(history),
            "resumed_epochs": len(restored),  # of those, restored from a checkpoint
            "n_params": n_params,
            "duration_s": time.perf_counter() - start,
            "clock": {"started": started_at, "training": next(iter(training_at), None), "ended": time.time()},
            "history": history_records(history),
            "process": {
                "pid": os.getpid(),
                "slot": cfg.sweep.slot,
                "device": str(device),
                "torch_threads": torch.get_num_threads(),
                "data_disk_reads": data.disk_reads,
            },
        },
    )
    if status != "orphaned":
        finished(cfg, checkpoints)
    record_trial(cfg, output_dir)
    if status == "complete":
        log.info("val_accuracy %.4f, %s parameters", history[-1].val_acc, n_params)
        if list(cfg.sweep.objectives) == ["val_accuracy", "n_params"]:
            return float(history[-1].val_acc), int(n_params)
        return float(history[-1].val_acc)
    if cfg.sweep.trial is None:
        raise DivergedError(reason)
    log.warning("Trial %d %s: %s", cfg.sweep.trial, status, reason)
    return StoppedEarly(status, str(reason))
