"""From a composed config to a trained model: the Hydra task (validate) and the final step (test)."""

from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from omegaconf import DictConfig
from torch import nn

from svhn_sweep import data
from svhn_sweep.config import build, validate
from svhn_sweep.data import Split, SVHNSource
from svhn_sweep.errors import ConfigError
from svhn_sweep.evaluation import PREDICTIONS_FILE, evaluate_model
from svhn_sweep.pruning import StoppedEarly, trial_reporter
from svhn_sweep.train import DivergedError, EpochStats, fit, history_records, use_amp, use_cuda_graphs

log = logging.getLogger(__name__)


def select_device(choice: str) -> torch.device:
    """``auto`` takes CUDA when present; asking for ``cuda`` without it is an error, not a silent CPU run."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is visible; use trainer.device=auto or cpu.")
    return torch.device(choice)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_training(cfg: DictConfig, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
    """Model, optimizer and scheduler (or None) from their ``_target_`` configs."""
    model = build(cfg.model).to(device)
    optimizer = build(cfg.optimizer)(model.parameters())
    scheduler = build(cfg.scheduler)(optimizer) if cfg.scheduler is not None else None
    return model, optimizer, scheduler


def _prepare(cfg: DictConfig) -> tuple[SVHNSource, torch.device]:
    validate(cfg)
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    seed_everything(cfg.seed)
    return build(cfg.data), select_device(cfg.trainer.device)


def _fit(cfg: DictConfig, source: SVHNSource, device: torch.device, train: Split, val: Split | None,
         on_epoch: Any = None) -> tuple[nn.Module, list[EpochStats]]:
    model, optimizer, scheduler = build_training(cfg, device)
    history = fit(
        model, optimizer, scheduler, train.to(device), None if val is None else val.to(device),
        source.normalizer(device), cfg.trainer.epochs, cfg.trainer.batch_size, cfg.seed,
        cfg.trainer.eval_batch_size, on_epoch, amp=use_amp(cfg.trainer.amp, device),
        compile_model=cfg.trainer.compile, cuda_graphs=use_cuda_graphs(cfg.trainer.cuda_graphs, device),
    )
    return model, history


def train_and_validate(cfg: DictConfig, output_dir: Path) -> float | StoppedEarly:
    """One trial: train on the train part of the train file, return the last epoch's val accuracy.

    In a sweep, a pruned or diverged trial returns :class:`StoppedEarly` for the sweeper to record; outside one,
    divergence raises. ``metrics.json`` is written in every case, with the epochs the trial got through.
    """
    start = time.perf_counter()
    source, device = _prepare(cfg)
    train, val = source.train_val(cfg.seed)
    report = trial_reporter(cfg.sweep)
    history: list[EpochStats] = []

    def on_epoch(stats: EpochStats) -> None:
        history.append(stats)
        if report is not None:
            report(stats)

    status, reason = "complete", None
    try:
        _fit(cfg, source, device, train, val, on_epoch)
    except (optuna.TrialPruned, DivergedError) as stop:
        status, reason = ("pruned" if isinstance(stop, optuna.TrialPruned) else "diverged"), str(stop)
    write_json(output_dir / "metrics.json", {
        "status": status,
        "reason": reason,
        "val_accuracy": history[-1].val_acc if history else None,
        "epochs": len(history),
        "duration_s": time.perf_counter() - start,
        "history": history_records(history),
        "process": {"pid": os.getpid(), "torch_threads": torch.get_num_threads(), "data_disk_reads": data.disk_reads},
    })
    if status == "complete":
        log.info("val_accuracy %.4f", history[-1].val_acc)
        return float(history[-1].val_acc)
    if cfg.sweep.trial is None:
        raise DivergedError(reason)
    log.warning("Trial %d %s: %s", cfg.sweep.trial, status, reason)
    return StoppedEarly(status, str(reason))


def retrain_and_test(cfg: DictConfig, output_dir: Path, origin: dict[str, Any] | None = None) -> dict[str, Any]:
    """Retrain a config (on train+val when ``final.train_on_val``) and score it on the test file, once.

    The test predictions are kept (``test_predictions.npz``, dataset order) so the error analysis never needs
    a second look at the test set through a retrain; ``origin`` (e.g. the trial retrained) goes into metrics.json.
    """
    start = time.perf_counter()
    source, device = _prepare(cfg)
    train, val = source.train_val(cfg.seed)
    if cfg.final.train_on_val:
        train, val = Split.concat(train, val), None
    model, history = _fit(cfg, source, device, train, val)
    test = source.load("test").to(device)
    predictions, labels = evaluate_model(model, test, source.normalizer(device), cfg.trainer.eval_batch_size,
                                         use_amp(cfg.trainer.amp, device))
    metrics = {
        **(origin or {}),
        "test_accuracy": float((predictions == labels).mean()),
        "val_accuracy": history[-1].val_acc,
        "trained_on": "train+val" if cfg.final.train_on_val else "train",
        "train_size": len(train),
        "test_size": len(test),
        "epochs": len(history),
        "duration_s": time.perf_counter() - start,
        "history": history_records(history),
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), output_dir / "model.pt")
    np.savez(output_dir / PREDICTIONS_FILE, predictions=predictions, labels=labels)
    write_json(output_dir / "metrics.json", metrics)
    return metrics


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n")
