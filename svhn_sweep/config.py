"""Typed schemas behind the YAML in ``conf/``.

Each YAML option starts from one of these dataclasses (``defaults: [base_*]``), so Hydra rejects a wrong
type or an unknown key at composition, and :func:`validate` rejects impossible values (a negative learning
rate, an empty layer list) before any data is loaded, naming the key, the value and what is allowed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from svhn_sweep.errors import ConfigError
from svhn_sweep.models import BatchNormPlacement  # defined beside the models, which must not need Hydra


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


# Where ``_target_`` may point (Hydra's execution whitelist): this package, torch, optuna and the Hydra plugins,
# plus what the user trusts in SVHN_SWEEP_TRUSTED_TARGETS (comma-separated, e.g. "mypkg.models.*"), which is
# how a model class of your own gets in. The environment, not the config, grants it: configs can be shared.
TRUSTED_TARGETS = ["svhn_sweep.*", "torch.*", "torchvision.*", "optuna.*", "hydra_plugins.*"] + [
    target.strip() for target in os.environ.get("SVHN_SWEEP_TRUSTED_TARGETS", "").split(",") if target.strip()
]


def build(node: Any, *args: Any) -> Any:
    """``hydra.utils.instantiate`` limited to :data:`TRUSTED_TARGETS`."""
    return instantiate(node, *args, _execution_whitelist_=TRUSTED_TARGETS)


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"Invalid config value {key}={value!r}: {allowed}.")


@dataclass
class DataConfig:
    _target_: str = MISSING
    root: str = MISSING
    val_fraction: float = 0.2
    mean: list[float] = field(default_factory=lambda: [0.43, 0.44, 0.47])
    std: list[float] = field(default_factory=lambda: [0.20, 0.20, 0.20])

    def __post_init__(self) -> None:
        _require(0.0 < self.val_fraction < 1.0, "data.val_fraction", self.val_fraction,
                 "must lie strictly between 0 and 1")
        _require(len(self.mean) == 3, "data.mean", self.mean, "needs one value per RGB channel (3)")
        _require(len(self.std) == 3 and all(s > 0 for s in self.std), "data.std", self.std,
                 "needs 3 positive values")


@dataclass
class SVHNDataConfig(DataConfig):
    _target_: str = "svhn_sweep.data.SVHNSource"
    download: bool = True


@dataclass
class SyntheticDataConfig(DataConfig):
    _target_: str = "svhn_sweep.data.SyntheticSource"
    train_size: int = 73257
    test_size: int = 26032
    generator_seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.train_size >= 10, "data.train_size", self.train_size, "must be at least 10")
        _require(self.test_size >= 1, "data.test_size", self.test_size, "must be at least 1")


def _check_dropout(value: float) -> None:
    _require(0.0 <= value < 1.0, "model.dropout", value, "must be in [0, 1)")


@dataclass
class MLPConfig:
    _target_: str = "svhn_sweep.models.MLP"
    hidden_sizes: list[int] = field(default_factory=lambda: [100])
    batchnorm: BatchNormPlacement = BatchNormPlacement.none
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _require(len(self.hidden_sizes) > 0 and all(h > 0 for h in self.hidden_sizes),
                 "model.hidden_sizes", list(self.hidden_sizes),
                 "needs at least one layer, every size positive, e.g. [100] or [256,128]")
        _check_dropout(self.dropout)


@dataclass
class CNNConfig:
    _target_: str = "svhn_sweep.models.CNN"
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _require(0 < len(self.channels) <= 5 and all(c > 0 for c in self.channels), "model.channels",
                 list(self.channels), "needs 1 to 5 positive channel counts (each block halves 32x32)")
        _check_dropout(self.dropout)


@dataclass
class OptimizerConfig:
    _target_: str = MISSING
    _partial_: bool = True
    lr: float = 1e-2
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _require(self.lr > 0, "optimizer.lr", self.lr, "must be positive")
        _require(self.weight_decay >= 0, "optimizer.weight_decay", self.weight_decay, "must be >= 0")


@dataclass
class SGDConfig(OptimizerConfig):
    _target_: str = "torch.optim.SGD"
    momentum: float = 0.9
    nesterov: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(0 <= self.momentum < 1, "optimizer.momentum", self.momentum, "must be in [0, 1)")


@dataclass
class AdamConfig(OptimizerConfig):
    _target_: str = "torch.optim.Adam"
    lr: float = 1e-3


@dataclass
class AdamWConfig(OptimizerConfig):
    _target_: str = "torch.optim.AdamW"
    lr: float = 1e-3
    weight_decay: float = 1e-2


@dataclass
class StepLRConfig:
    _target_: str = "torch.optim.lr_scheduler.StepLR"
    _partial_: bool = True
    step_size: int = 2
    gamma: float = 0.5

    def __post_init__(self) -> None:
        _require(self.step_size >= 1, "scheduler.step_size", self.step_size, "must be >= 1")
        _require(0 < self.gamma <= 1, "scheduler.gamma", self.gamma, "must be in (0, 1]")


@dataclass
class CosineLRConfig:
    _target_: str = "torch.optim.lr_scheduler.CosineAnnealingLR"
    _partial_: bool = True
    T_max: int = MISSING
    eta_min: float = 0.0


@dataclass
class TrainerConfig:
    epochs: int = 10
    batch_size: int = 256
    eval_batch_size: int = 4096
    device: Device = Device.auto
    # torch intra-op threads; null keeps torch's default (all cores).
    num_threads: int | None = None
    # bf16 autocast: auto = on with CUDA (tensor cores, half the memory traffic), off on CPU (keeps fp32 results).
    amp: bool | str = "auto"
    # torch.compile: off, since compiling each new architecture costs more than it saves in a trial of a few
    # epochs (benchmarks/bench.py --device cuda measures both); worth it for long single runs.
    compile: bool = False
    # CUDA graphs: auto = on with CUDA. A training step of these small nets is dozens of tiny kernels whose
    # launches cost more than their work; one captured step replays them at once (bench.py measures both).
    cuda_graphs: bool | str = "auto"

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, "trainer.epochs", self.epochs, "must be >= 1")
        _require(self.batch_size >= 1, "trainer.batch_size", self.batch_size, "must be >= 1")
        _require(self.eval_batch_size >= 1, "trainer.eval_batch_size", self.eval_batch_size, "must be >= 1")
        _require(self.num_threads is None or self.num_threads >= 1, "trainer.num_threads",
                 self.num_threads, "must be null or >= 1")
        _require(self.amp in ("auto", True, False), "trainer.amp", self.amp, "must be auto, true or false")
        _require(self.cuda_graphs in ("auto", True, False), "trainer.cuda_graphs", self.cuda_graphs,
                 "must be auto, true or false")
        _require(not (self.cuda_graphs is True and self.device == Device.cpu), "trainer.cuda_graphs",
                 self.cuda_graphs, "CUDA graphs need trainer.device=cuda (or auto on a CUDA machine)")


@dataclass
class FinalConfig:
    """The retrain of the best trial that ends a sweep, scored once on the test file."""

    enabled: bool = True
    train_on_val: bool = True
    top_k: int = 10


@dataclass
class SweepConfig:
    """The pruner (group ``sweep/pruner``) and, set by the sweeper on each job, the trial it runs."""

    pruner: Any = None
    study: str | None = None
    storage: str | None = None
    trial: int | None = None

    def __post_init__(self) -> None:
        _require(self.pruner in (None, "none") or isinstance(self.pruner, dict), "sweep.pruner", self.pruner,
                 "choose sweep/pruner=median|hyperband|successive_halving, or sweep.pruner=none to turn it off")


@dataclass
class TrainConfig:
    data: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = None
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    final: FinalConfig = field(default_factory=FinalConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    seed: int = 42


def validate(cfg: DictConfig) -> None:
    """Run every schema's value checks (``__post_init__``) on a composed config; raises ConfigError."""
    task_keys = [key for key in cfg if key != "hydra"]
    try:
        OmegaConf.to_object(OmegaConf.masked_copy(cfg, task_keys))
    except ValidationError as error:  # the dataclass raised inside OmegaConf: surface our own message
        cause = error.__cause__
        raise cause if isinstance(cause, ConfigError) else ConfigError(str(error)) from None


def register_configs() -> None:
    """Make the ``base_*`` schemas available to the YAML files' defaults lists."""
    cs = ConfigStore.instance()
    cs.store(name="base_train", node=TrainConfig)
    for group, name, node in [
        ("data", "base_svhn", SVHNDataConfig),
        ("data", "base_synthetic", SyntheticDataConfig),
        ("model", "base_mlp", MLPConfig),
        ("model", "base_cnn", CNNConfig),
        ("optimizer", "base_sgd", SGDConfig),
        ("optimizer", "base_adam", AdamConfig),
        ("optimizer", "base_adamw", AdamWConfig),
        ("scheduler", "base_step", StepLRConfig),
        ("scheduler", "base_cosine", CosineLRConfig),
    ]:
        cs.store(group=group, name=name, node=node)
