"""The config groups' options as typed dataclasses: the one place every default of a run is stated.

:func:`register_configs` stores each dataclass in Hydra's ConfigStore as a group option (``data=svhn``,
``model=cnn``, ``optimizer=adamw``, ...), as Hydra's own plugins do, so ``conf/`` holds only what is not a
default value: the primary config's defaults list and Hydra settings, the search spaces and the pruners. Hydra
rejects a wrong type or an unknown key at composition, and :func:`validate` rejects impossible values (a
negative learning rate, an empty layer list) before any data is loaded, naming the key, the value and what is
allowed.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate, to_absolute_path
from omegaconf import II, MISSING, DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import ValidationError

from svhn_sweep.constants import SVHN_MEAN, SVHN_STD, SVHN_TEST_SIZE, SVHN_TRAIN_SIZE
from svhn_sweep.core.data import SVHNSource
from svhn_sweep.core.errors import ConfigError
from svhn_sweep.core.models import BatchNormPlacement
from svhn_sweep.core.train import BATCH_SIZE, EVAL_BATCH_SIZE


class Device(str, Enum):
    """``trainer.device``: ``auto`` takes CUDA when it is there."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


# The configs ship inside the package, so a checkout and an installed wheel find them at the same place.
CONFIG_DIR = str(Path(__file__).parent.parent / "conf")

# Where ``_target_`` may point (Hydra's execution whitelist): the classes this project builds, by name or by a
# package that holds only such classes (its models, data sources, loggers and end-of-sweep callback; torch's
# optimizers and schedulers; Optuna's pruners and samplers; its search-space hooks; the Hydra plugins it uses),
# plus what the user trusts in SVHN_SWEEP_TRUSTED_TARGETS (comma-separated, e.g. "mypkg.models.*"), which is how
# a model class of your own gets in. The environment, not the config, grants it: configs can be shared.
TRUSTED_ENV = "SVHN_SWEEP_TRUSTED_TARGETS"
USER_TRUSTED = [target.strip() for target in os.environ.get(TRUSTED_ENV, "").split(",") if target.strip()]
TRUSTED_TARGETS = [
    "svhn_sweep.core.models.*",
    "svhn_sweep.core.data.SVHNSource",
    "svhn_sweep.core.data.SyntheticSource",
    "svhn_sweep.sweep.loggers.TensorBoardLogger",
    "svhn_sweep.sweep.loggers.MLflowLogger",
    "svhn_sweep.final.RetrainBest",
    "svhn_sweep.sweep.space.*",  # search-space hooks (hydra.sweeper.custom_search_space)
    "torch.optim.*",
    "optuna.pruners.*",
    "optuna.samplers.*",
    "hydra_plugins.svhn_sweep_optuna.*",
    "hydra_plugins.hydra_optuna_sweeper.*",
    "hydra_plugins.hydra_joblib_launcher.*",
    "hydra_plugins.hydra_submitit_launcher.*",
    *USER_TRUSTED,
]
# Loaders: they run code or unpickle objects from a file or the network. Refused even under a trusted package
# (SVHN_SWEEP_TRUSTED_TARGETS=torch.*), unless the variable names one exactly.
REFUSED_TARGETS = (
    "torch.hub.*",
    "torch.load",
    "torch.serialization.*",
    "torch.jit.load",
    "torch.package.*",
    "torch.export.load",
    "torch.utils.model_zoo.*",
    "torch.utils.cpp_extension.*",
    "torch.ops.load_library",
    "torch.classes.load_library",
    "torchvision.models.get_model",
    "pickle.*",
    "_pickle.*",
    "marshal.*",
    "shelve.*",
    "dill.*",
    "joblib.load",
    "numpy.load",
    "pandas.read_pickle",
    "importlib.*",
    "runpy.*",
    "subprocess.*",
    "os.system",
    "os.popen",
)


def _matches(target: str, patterns: Iterable[str]) -> bool:
    """Hydra's whitelist rule: an exact name, or a ``package.*`` prefix."""
    return any(target.startswith(p[:-1]) if p.endswith(".*") else target == p for p in patterns)


def check_targets(node: Any, key: str = "") -> None:
    """Every ``_target_`` in a config node (a DictConfig, or its plain container) is one :data:`TRUSTED_TARGETS`
    allows and no loader; raises ConfigError naming the key, before anything is built.
    """
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=True, throw_on_missing=False)
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for name, child in children:
        path = f"{key}.{name}" if key else str(name)
        if name == "_target_":
            check_target(path, str(child))
        else:
            check_targets(child, path)


def check_target(path: str, target: str, kind: str = "a class this project builds") -> None:
    """``target``, the dotted name at ``path``, is one :data:`TRUSTED_TARGETS` allows and no loader; else one
    ConfigError naming the key, ``kind`` (what the project would put there) and how to trust it.
    """
    refused = _matches(target, REFUSED_TARGETS) and target not in USER_TRUSTED
    if refused or not _matches(target, TRUSTED_TARGETS):
        why = "loads code or pickled objects" if refused else f"is not {kind}"
        raise ConfigError(
            f"{path}={target} {why}, so no config may point there: configs can be shared, and only the "
            f"environment grants trust. If you trust it, add it{' by its exact name' if refused else ''} to "
            f"{TRUSTED_ENV} (comma-separated, e.g. {TRUSTED_ENV}='{target}'), or choose another option."
        )


def build(node: Any, *args: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` limited to :data:`TRUSTED_TARGETS`, loaders refused (:func:`check_targets`)."""
    check_targets(node)
    return instantiate(node, *args, **kwargs, _execution_whitelist_=TRUSTED_TARGETS)


def data_source(cfg: DictConfig) -> SVHNSource:
    """The config's data source, its ``data.root`` taken from where the command ran (jobs may run elsewhere)."""
    return build(cfg.data, root=to_absolute_path(cfg.data.root))


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"Invalid config value {key}={value!r}: {allowed}.")


@dataclass
class DataConfig:
    """What every data source shares: the validation share of the train file and the normalisation."""

    _target_: str = MISSING
    # The data set's folder, relative to where the command runs (each option has its own).
    root: str = MISSING
    # Share of the train file held out for validation (the trials' objective), the same split in every trial.
    val_fraction: float = 0.2
    # Per-channel mean and std of the pixels in [0, 1], for normalisation (SVHN's, as the notebook uses).
    mean: list[float] = field(default_factory=lambda: list(SVHN_MEAN))
    std: list[float] = field(default_factory=lambda: list(SVHN_STD))

    def __post_init__(self) -> None:
        _require(
            0.0 < self.val_fraction < 1.0, "data.val_fraction", self.val_fraction, "must lie strictly between 0 and 1"
        )
        _require(len(self.mean) == 3, "data.mean", self.mean, "needs one value per RGB channel (3)")
        _require(len(self.std) == 3 and all(s > 0 for s in self.std), "data.std", self.std, "needs 3 positive values")


@dataclass
class SVHNDataConfig(DataConfig):
    """``data=svhn``: the real SVHN (cropped digits, format 2) through torchvision: download, md5, label 10 -> 0.

    Without network, put train_32x32.mat and test_32x32.mat into ``root`` by hand.
    """

    _target_: str = "svhn_sweep.core.data.SVHNSource"
    root: str = "data/svhn"
    # Download the two .mat files (md5-checked) when they are not in root; false: stop with a message instead.
    download: bool = True


@dataclass
class SyntheticDataConfig(DataConfig):
    """``data=synthetic``: the procedural stand-in in SVHN's .mat format, generated once per sizes and seed."""

    _target_: str = "svhn_sweep.core.data.SyntheticSource"
    root: str = "data/synthetic"
    # Images in the generated train and test files (SVHN's sizes by default); each size set is cached apart.
    train_size: int = SVHN_TRAIN_SIZE
    test_size: int = SVHN_TEST_SIZE
    # Seed of the generator: the same seed and sizes give the same images.
    generator_seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.train_size >= 10, "data.train_size", self.train_size, "must be at least 10")
        _require(self.test_size >= 1, "data.test_size", self.test_size, "must be at least 1")


def _check_dropout(value: float) -> None:
    _require(0.0 <= value < 1.0, "model.dropout", value, "must be in [0, 1)")


@dataclass
class MLPConfig:
    """``model=mlp``: flatten -> [Linear -> (BN) -> ReLU -> (BN) -> (Dropout)] per hidden size -> Linear(10)."""

    _target_: str = "svhn_sweep.core.models.MLP"
    # Width of each hidden layer, input side first: [100] is the notebook's net.
    hidden_sizes: list[int] = field(default_factory=lambda: [100])
    # BatchNorm in each hidden layer: none, before or after the activation.
    batchnorm: BatchNormPlacement = BatchNormPlacement.none
    # Dropout probability after each hidden layer (0: none).
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _require(
            len(self.hidden_sizes) > 0 and all(h > 0 for h in self.hidden_sizes),
            "model.hidden_sizes",
            list(self.hidden_sizes),
            "needs at least one layer, every size positive, e.g. [100] or [256,128]",
        )
        _check_dropout(self.dropout)


@dataclass
class CNNConfig:
    """``model=cnn``: [Conv3x3 -> BN -> ReLU -> MaxPool2] per entry of ``channels`` -> average pool -> Linear(10)."""

    _target_: str = "svhn_sweep.core.models.CNN"
    # Output channels of each conv block (1 to 5 blocks).
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    # Dropout probability before the classifier (0: none).
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _require(
            0 < len(self.channels) <= 5 and all(c > 0 for c in self.channels),
            "model.channels",
            list(self.channels),
            "needs 1 to 5 positive channel counts (each block halves 32x32)",
        )
        _check_dropout(self.dropout)


@dataclass
class OptimizerConfig:
    """What every optimizer option has: a learning rate and weight decay (built partial, given the parameters)."""

    _target_: str = MISSING
    _partial_: bool = True
    # Learning rate (the scheduler changes it per epoch).
    lr: float = 1e-2
    # L2 penalty (AdamW: decoupled weight decay).
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _require(self.lr > 0, "optimizer.lr", self.lr, "must be positive")
        _require(self.weight_decay >= 0, "optimizer.weight_decay", self.weight_decay, "must be >= 0")


@dataclass
class SGDConfig(OptimizerConfig):
    """``optimizer=sgd``: SGD with momentum."""

    _target_: str = "torch.optim.SGD"
    # Momentum factor; 0 is plain SGD (the notebook's).
    momentum: float = 0.9
    # Nesterov momentum instead of the classical one.
    nesterov: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(0 <= self.momentum < 1, "optimizer.momentum", self.momentum, "must be in [0, 1)")


@dataclass
class AdamConfig(OptimizerConfig):
    """``optimizer=adam``."""

    _target_: str = "torch.optim.Adam"
    lr: float = 1e-3


@dataclass
class AdamWConfig(OptimizerConfig):
    """``optimizer=adamw``: Adam with decoupled weight decay."""

    _target_: str = "torch.optim.AdamW"
    lr: float = 1e-3
    weight_decay: float = 1e-2


@dataclass
class StepLRConfig:
    """``scheduler=step``: the notebook's annealing, halving the learning rate every 2 epochs."""

    _target_: str = "torch.optim.lr_scheduler.StepLR"
    _partial_: bool = True
    # Epochs between two decays of the learning rate.
    step_size: int = 2
    # Factor applied to the learning rate at each decay.
    gamma: float = 0.5

    def __post_init__(self) -> None:
        _require(self.step_size >= 1, "scheduler.step_size", self.step_size, "must be >= 1")
        _require(0 < self.gamma <= 1, "scheduler.gamma", self.gamma, "must be in (0, 1]")


@dataclass
class CosineLRConfig:
    """``scheduler=cosine``: cosine annealing to ``eta_min`` over the run's epochs."""

    _target_: str = "torch.optim.lr_scheduler.CosineAnnealingLR"
    _partial_: bool = True
    # Epochs of one half cosine period: the run's epochs, so the rate reaches eta_min at the end.
    T_max: int = II("trainer.epochs")
    # Learning rate at the end of the period.
    eta_min: float = 0.0


@dataclass
class TrainerConfig:
    """How a config is trained: epochs, batch sizes, device and the speed switches."""

    # Sized with hydra.sweeper.n_trials (20) for a CPU budget; raise both on a GPU.
    epochs: int = 4
    # Training mini-batch size.
    batch_size: int = BATCH_SIZE
    # Batch size for scoring the val and test splits (no gradients: larger is faster).
    eval_batch_size: int = EVAL_BATCH_SIZE
    # Where to train: auto takes CUDA when it is there.
    device: Device = Device.auto
    # torch intra-op threads; null keeps torch's default (all cores).
    num_threads: int | None = None
    # bf16 autocast: auto = on where the device has bf16 matrix units (CUDA; CPUs with AMX, where an epoch of the
    # default pyramids ran 1.4-1.9x faster at batch 256), fp32 elsewhere; false keeps fp32 everywhere.
    amp: bool | str = "auto"
    # torch.compile: off, since compiling each new architecture costs more than it saves in a trial of a few
    # epochs (benchmarks/bench.py --device cuda measures both); worth it for long single runs.
    compile: bool = False
    # CUDA graphs: auto = on with CUDA. A training step of these small nets is dozens of tiny kernels whose
    # launches cost more than their work; one captured step replays them at once (bench.py measures both).
    cuda_graphs: bool | str = "auto"
    # true: no log line per epoch (they go to DEBUG); the sweep's line per finished trial stays.
    quiet: bool = False
    # Every run saves checkpoint.pt into its folder after each epoch, to resume from if it is interrupted; true
    # keeps it once the run has finished (the last epoch's model, optimizer and generators), false removes it.
    keep_checkpoints: bool = False

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, "trainer.epochs", self.epochs, "must be >= 1")
        _require(self.batch_size >= 1, "trainer.batch_size", self.batch_size, "must be >= 1")
        _require(self.eval_batch_size >= 1, "trainer.eval_batch_size", self.eval_batch_size, "must be >= 1")
        _require(
            self.num_threads is None or self.num_threads >= 1,
            "trainer.num_threads",
            self.num_threads,
            "must be null or >= 1",
        )
        _require(self.amp in ("auto", True, False), "trainer.amp", self.amp, "must be auto, true or false")
        _require(
            self.cuda_graphs in ("auto", True, False),
            "trainer.cuda_graphs",
            self.cuda_graphs,
            "must be auto, true or false",
        )
        _require(
            not (self.cuda_graphs is True and self.device == Device.cpu),
            "trainer.cuda_graphs",
            self.cuda_graphs,
            "CUDA graphs need trainer.device=cuda (or auto on a CUDA machine)",
        )


@dataclass
class FinalConfig:
    """The retrain of the best trial that ends a sweep, scored once on the test file."""

    # Retrain the selected trial's config and score it on the test file once the trials are done.
    enabled: bool = True
    # Retrain on train+val (more data for the final model); false: on the train split alone.
    train_on_val: bool = True
    # Trials printed in the summary table at the end of a sweep.
    top_k: int = 10
    # Epochs of the retrain; null: the trials' trainer.epochs. A short search, then a full-length retrain: the
    # search only ranks configs, and the retrain makes the accuracy: 16 epochs took the default sweep's winner from
    # test accuracy 0.81 (4 epochs) to 0.89, 20 with cosine annealing to 0.902-0.905 over three seeds (synthetic
    # set, docs/search.md).
    epochs: int | None = 20
    # Batch size of the retrain; null: the trials' trainer.batch_size. One long run may prefer another batch than
    # many short ones (benchmarks/batch_size.py compares both by val accuracy against time, docs/search.md).
    batch_size: int | None = None
    # Learning-rate schedule of the retrain, an option of the scheduler group (cosine, step, none); null: the
    # selected trial's own. The trials' schedule ranked configs over trainer.epochs; the retrain anneals over its
    # own length: cosine took the default sweep's winner from val accuracy 0.849 (its step schedule, halving the
    # rate every 2 of 16 epochs) to 0.878 in the same time (synthetic set, docs/search.md).
    scheduler: str | None = "cosine"
    # Which trial is retrained: best (highest val accuracy), or smallest_within:D (the fewest parameters among
    # the trials within D of the best val accuracy; needs sweep.objectives=[val_accuracy,n_params]).
    select: str = "best"

    def __post_init__(self) -> None:
        _require(self.epochs is None or self.epochs >= 1, "final.epochs", self.epochs, "must be null or >= 1")
        _require(
            self.batch_size is None or self.batch_size >= 1, "final.batch_size", self.batch_size, "must be null or >= 1"
        )
        _require(
            self.scheduler is None or self.scheduler in SCHEDULERS,
            "final.scheduler",
            self.scheduler,
            f"must be null (the trial's own) or one of {', '.join(SCHEDULERS)}",
        )
        _require(
            selection_margin(self.select) is not None,
            "final.select",
            self.select,
            "must be best or smallest_within:D with a margin D >= 0, e.g. smallest_within:0.01",
        )


OBJECTIVES = ("val_accuracy", "n_params")  # what a trial can return: maximised, minimised


def selection_margin(select: str) -> float | None:
    """``final.select`` as a margin of val accuracy below the best: 0 for best, D for smallest_within:D; None if
    the rule is not one of those.
    """
    if select == "best":
        return 0.0
    name, _, margin = select.partition(":")
    try:
        value = float(margin)
    except ValueError:
        return None
    return value if name == "smallest_within" and value >= 0 else None


@dataclass
class SweepConfig:
    """The pruner (group ``sweep/pruner``) and, set by the sweeper on each job, the trial it runs."""

    # Chosen by sweep/pruner; null (sweep/pruner=none, or sweep.pruner=none): no pruning.
    pruner: Any = MISSING
    # Set by the sweeper on each job: the study's name, its storage URL and the trial number the job runs.
    study: str | None = None
    storage: str | None = None
    trial: int | None = None
    # What a trial returns to the study: val_accuracy, or [val_accuracy, n_params] (the parameter count, with
    # 'hydra.sweeper.direction=[maximize,minimize]'): a Pareto front of accuracy and size. Two objectives turn
    # pruning off (Optuna prunes single-objective studies only).
    objectives: list[str] = field(default_factory=lambda: ["val_accuracy"])
    # The trial's place in its batch when several are in flight: spreads them over the visible CUDA devices.
    slot: int | None = None
    # A run folder whose checkpoint.pt this run continues when its own folder has none: the sweeper sets it on
    # a trial that retries an interrupted one (its folder); a single run may be given one by hand.
    resume_from: str | None = None
    # Set by the sweeper where SLURM has no accounting (sacct): seconds between two beats of the job's heartbeat
    # file in its run folder, by which the sweeper sees that the job still runs (svhn_sweep/sweep/liveness.py).
    heartbeat: float | None = None

    def __post_init__(self) -> None:
        _require(
            list(self.objectives) in (["val_accuracy"], list(OBJECTIVES)),
            "sweep.objectives",
            list(self.objectives),
            "must be [val_accuracy] or [val_accuracy,n_params]",
        )
        # MISSING only while Hydra builds the schema itself; a composed config has one of the group's options.
        _require(
            self.pruner in (None, "none", MISSING) or isinstance(self.pruner, dict),
            "sweep.pruner",
            self.pruner,
            "choose sweep/pruner=median|percentile|hyperband|successive_halving, or sweep.pruner=none to turn it off",
        )


@dataclass
class TensorBoardLoggerConfig:
    """``logger=tensorboard``: each trial and the final retrain as a run in ``log_dir/<study>/``."""

    _target_: str = "svhn_sweep.sweep.loggers.TensorBoardLogger"
    # TensorBoard's folder; one sub-folder per study, one per run.
    log_dir: str = "outputs/tensorboard"


@dataclass
class MLflowLoggerConfig:
    """``logger=mlflow``: an experiment per study, a run per trial and one for the final retrain."""

    _target_: str = "svhn_sweep.sweep.loggers.MLflowLogger"
    # A local store (SQLite; artifacts in mlartifacts/ beside it) or a tracking server, e.g. http://mlflow-host:5000.
    tracking_uri: str = "sqlite:///outputs/mlflow.db"


@dataclass
class TrainConfig:
    """The primary config's schema: one option of each group, the trainer, the final step, the sweep's link."""

    # The data set (group data): svhn or synthetic.
    data: Any = MISSING
    # The network (group model): mlp or cnn.
    model: Any = MISSING
    # The optimizer (group optimizer): sgd, adam or adamw.
    optimizer: Any = MISSING
    # The learning-rate schedule (group scheduler); scheduler=none sets it to null.
    scheduler: Any = MISSING
    # The experiment tracker (group logger); logger=none (the default) sets it to null.
    logger: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    final: FinalConfig = field(default_factory=FinalConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    # Fixes the train/val split, the initialisation and the batch order.
    seed: int = 42

    def __post_init__(self) -> None:
        _require(0 <= self.seed < 2**32, "seed", self.seed, "must be between 0 and 2**32 - 1 (numpy's seeds)")


def validate(cfg: DictConfig) -> None:
    """Run every schema's value checks (``__post_init__``) on a composed config; raises ConfigError."""
    task = copy.deepcopy(cfg)  # without Hydra's own node, and still a TrainConfig, so its own checks run too
    with read_write(task), open_dict(task):
        task.pop("hydra", None)
    check_targets(task)
    check_targets(OmegaConf.select(cfg, "hydra.callbacks"), "hydra.callbacks")
    try:
        OmegaConf.to_object(task)
    except ValidationError as error:  # the dataclass raised inside OmegaConf: surface our own message
        cause = error.__cause__
        raise cause if isinstance(cause, ConfigError) else ConfigError(str(error)) from None


GROUP_OPTIONS = {
    ("data", "svhn"): SVHNDataConfig,
    ("data", "synthetic"): SyntheticDataConfig,
    ("model", "mlp"): MLPConfig,
    ("model", "cnn"): CNNConfig,
    ("optimizer", "sgd"): SGDConfig,
    ("optimizer", "adam"): AdamConfig,
    ("optimizer", "adamw"): AdamWConfig,
    ("scheduler", "step"): StepLRConfig,
    ("scheduler", "cosine"): CosineLRConfig,
    ("logger", "tensorboard"): TensorBoardLoggerConfig,
    ("logger", "mlflow"): MLflowLoggerConfig,
}

# The scheduler group's options: its dataclasses and conf/scheduler/none.yaml (no scheduler).
SCHEDULERS = ("none", *(name for group, name in GROUP_OPTIONS if group == "scheduler"))


def register_configs() -> None:
    """Store the primary schema (``base_train``) and every group option in Hydra's ConfigStore; calling it again
    (each command and test that composes does) stores the same nodes again.
    """
    cs = ConfigStore.instance()
    cs.store(name="base_train", node=TrainConfig, replace=True)
    for (group, name), node in GROUP_OPTIONS.items():
        cs.store(group=group, name=name, node=node, replace=True)
