"""From a composed config to a trained model: the steps a trial and the final retrain share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from svhn_sweep.core.checkpoint import Checkpoints
from svhn_sweep.core.data import Split, SVHNSource
from svhn_sweep.core.train import EpochStats, fit, seed_everything, select_device, use_amp, use_cuda_graphs
from svhn_sweep.sweep.config import build, data_source, validate
from svhn_sweep.sweep.resources import slot_device


def build_training(cfg: DictConfig, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
    """Model, optimizer and scheduler (or None) from their ``_target_`` configs."""
    model = build(cfg.model).to(device)
    optimizer = build(cfg.optimizer)(model.parameters())
    scheduler = build(cfg.scheduler)(optimizer) if cfg.scheduler is not None else None
    return model, optimizer, scheduler


def prepare(cfg: DictConfig) -> tuple[SVHNSource, torch.device]:
    """Check the config's values, set threads and seeds; the data source and the device to train on (a trial
    in flight beside others takes its own card when several are visible).
    """
    validate(cfg)
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    seed_everything(cfg.seed)
    device = slot_device(cfg.trainer.device, cfg.sweep.slot, torch.cuda.device_count())
    return data_source(cfg), select_device(device)


def fit_config(
    cfg: DictConfig,
    source: SVHNSource,
    device: torch.device,
    train: Split,
    val: Split | None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    checkpoints: Checkpoints | None = None,
    on_resume: Callable[[list[EpochStats]], None] | None = None,
) -> tuple[nn.Module, list[EpochStats]]:
    """Build the config's model and train it with the config's trainer settings (checkpointed, resumed: ``fit``)."""
    model, optimizer, scheduler = build_training(cfg, device)
    history = fit(
        model,
        optimizer,
        scheduler,
        train.to(device),
        None if val is None else val.to(device),
        source.normalizer(device),
        cfg.trainer.epochs,
        cfg.trainer.batch_size,
        cfg.seed,
        cfg.trainer.eval_batch_size,
        on_epoch,
        amp=use_amp(cfg.trainer.amp, device),
        compile_model=cfg.trainer.compile,
        cuda_graphs=use_cuda_graphs(cfg.trainer.cuda_graphs, device),
        verbose=not cfg.trainer.quiet,
        checkpoints=checkpoints,
        on_resume=on_resume,
    )
    return model, history
