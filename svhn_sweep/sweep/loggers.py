"""Experiment trackers (``logger=tensorboard`` | ``mlflow``): each trial, and the final retrain, as one run.

A run is written when it ends, from the ``metrics.json`` its folder already holds: its parameters (the composed
config, flattened), the per-epoch loss, train and val accuracy and learning rate, its status and final accuracy;
the final retrain adds its test accuracy and its model file. Runs are grouped by study (MLflow: one experiment
per study; TensorBoard: one folder per study). Tracking is a side show: a tracker that fails (server unreachable,
folder unwritable) is reported in one warning and not used again by that process; the trial goes on and
``metrics.json`` keeps everything. Only a missing package is an error, raised before a sweep's first trial.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf
from sqlalchemy.engine import make_url

from svhn_sweep.constants import CONFIG_FILE, METRICS_FILE, MODEL_FILE
from svhn_sweep.core.errors import ConfigError
from svhn_sweep.sweep.config import build
from svhn_sweep.sweep.study import absolute_storage_url

log = logging.getLogger(__name__)

SINGLE_RUNS = "runs"  # the group of runs outside a sweep (``python -m svhn_sweep logger=...``)
EPOCH_METRICS = ("loss", "train_acc", "val_acc", "lr")  # per epoch, from metrics.json's history
# Trackers that failed in this process, by where they write: warned about once, then left alone.
_failed: set[str] = set()


@dataclass
class RunRecord:
    """A finished run as a tracker receives it."""

    group: str  # the study (or SINGLE_RUNS)
    name: str  # "trial 3", "final", or a single run's folder name
    params: dict[str, str | int | float | bool]
    history: list[dict[str, Any]]  # one dict per epoch: epoch, loss, train_acc, val_acc, lr, seconds
    status: str  # complete | pruned | diverged
    summary: dict[str, float]  # val_accuracy, test_accuracy: what the run is judged by
    artifacts: list[Path] = field(default_factory=list)


class RunLogger(ABC):
    """One tracker: ``check`` before a sweep starts, ``write`` a finished run."""

    package: str  # the module it needs
    extra: str  # the pip extra that installs it

    @property
    @abstractmethod
    def where(self) -> str:
        """Where it writes, for messages (a folder, a tracking URI)."""

    def check(self) -> None:
        """Raise :class:`ConfigError` when the tracker's package is not installed (seconds into a sweep, not later)."""
        if importlib.util.find_spec(self.package) is None:
            raise ConfigError(
                f"logger={self.extra} needs the {self.package} package, which is not installed: "
                f"pip install -e '.[{self.extra}]' (or choose logger=none)."
            )

    @abstractmethod
    def write(self, run: RunRecord) -> None:
        """Record ``run``; may raise, :func:`record` turns that into one warning."""


class TensorBoardLogger(RunLogger):
    """``logger=tensorboard``: event files in ``log_dir/<study>/<run>`` (``tensorboard --logdir log_dir``)."""

    package = "tensorboard"
    extra = "tensorboard"

    def __init__(self, log_dir: str) -> None:
        self.log_dir = Path(to_absolute_path(log_dir))

    @property
    def where(self) -> str:
        """The event folder."""
        return str(self.log_dir)

    def write(self, run: RunRecord) -> None:
        """Per-epoch scalars, the status and artifacts as text, and the parameters in the HParams dashboard."""
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(self.log_dir / run.group / run.name.replace(" ", "_"))) as writer:
            for epoch in run.history:
                for key in EPOCH_METRICS:
                    if epoch[key] is not None:
                        writer.add_scalar(key, epoch[key], epoch["epoch"])
            writer.add_text("status", run.status)
            for artifact in run.artifacts:  # TensorBoard keeps no files: say where they are
                writer.add_text("artifacts", str(artifact))
            writer.add_hparams({**run.params, "status": run.status}, run.summary, run_name=".")


@lru_cache(maxsize=4)
def _mlflow_client(tracking_uri: str) -> Any:
    """One client per store and process: opening a SQLite store checks its schema, seconds each time."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri)


class MLflowLogger(RunLogger):
    """``logger=mlflow``: one experiment per study, a run per trial and one for the final retrain."""

    package = "mlflow"
    extra = "mlflow"

    def __init__(self, tracking_uri: str) -> None:
        local = tracking_uri.startswith("sqlite")
        self.tracking_uri = absolute_storage_url(tracking_uri, Path(to_absolute_path("."))) if local else tracking_uri
        url = make_url(self.tracking_uri) if local else None
        # A local store keeps its artifacts beside the database; a server decides for itself.
        self.artifacts = Path(url.database).with_name("mlartifacts").as_uri() if url and url.database else None

    @property
    def where(self) -> str:
        """The tracking URI."""
        return self.tracking_uri

    def check(self) -> None:
        """The package, and for a local store its folder and schema, made once before trials run in parallel."""
        super().check()
        if self.artifacts:
            Path(make_url(self.tracking_uri).database).parent.mkdir(parents=True, exist_ok=True)
            _mlflow_client(self.tracking_uri)

    def write(self, run: RunRecord) -> None:
        """Parameters, per-epoch metrics (step = epoch), tags, artifacts and the run's end state."""
        from mlflow.entities import Metric, Param, RunStatus
        from mlflow.exceptions import MlflowException

        if self.tracking_uri.startswith(("http://", "https://")):  # fail in seconds, not after MLflow's retries
            urllib.request.urlopen(self.tracking_uri.rstrip("/") + "/health", timeout=5).close()
        client = _mlflow_client(self.tracking_uri)
        experiment = client.get_experiment_by_name(run.group)
        if experiment is None:
            try:
                experiment_id = client.create_experiment(run.group, artifact_location=self.artifacts)
            except MlflowException:  # another worker created it first
                experiment_id = client.get_experiment_by_name(run.group).experiment_id
        else:
            experiment_id = experiment.experiment_id
        tags = {"study": run.group, "status": run.status}
        run_id = client.create_run(experiment_id, run_name=run.name, tags=tags).info.run_id
        now = int(time.time() * 1000)
        last = run.history[-1]["epoch"] if run.history else 0
        metrics = [
            Metric(key, float(epoch[key]), now, epoch["epoch"])
            for epoch in run.history
            for key in EPOCH_METRICS
            if epoch[key] is not None
        ] + [Metric(key, value, now, last) for key, value in run.summary.items()]
        params = [Param(key, str(value)) for key, value in run.params.items()]
        for chunk in range(0, max(len(metrics), len(params)), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run_id, metrics=metrics[chunk : chunk + 100], params=params[chunk : chunk + 100])
        for artifact in run.artifacts:
            client.log_artifact(run_id, str(artifact))
        status = {"complete": RunStatus.FINISHED, "pruned": RunStatus.KILLED}.get(run.status, RunStatus.FAILED)
        client.set_terminated(run_id, RunStatus.to_string(status))


def run_logger(cfg: DictConfig) -> RunLogger | None:
    """The config's tracker (``logger`` group), or None for ``logger=none``."""
    return build(cfg.logger) if cfg.get("logger") is not None else None


def flat_params(cfg: DictConfig) -> dict[str, str | int | float | bool]:
    """The composed config as ``key.sub=value`` pairs (lists and null as text), without the sweep's bookkeeping."""
    tree = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)

    def leaves(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key not in ("hydra", "sweep", "logger", "_partial_"):
                    yield from leaves(value, f"{prefix}{key}.")
        else:
            yield prefix[:-1], node if isinstance(node, str | int | float | bool) else json.dumps(node)

    return dict(leaves(tree, ""))


def record(cfg: DictConfig, group: str, name: str, make_run: Callable[[], RunRecord]) -> None:
    """Write the run ``make_run`` builds (from files the run wrote) with the config's tracker. Never raises: a failure,
    in building the record or in the tracker, is one warning per tracker and process.
    """
    logger = None
    try:
        logger = run_logger(cfg)
        if logger is None or logger.where in _failed:
            return
        logger.write(make_run())
    except Exception as error:
        where = logger.where if logger is not None else str(cfg.logger.get("_target_"))
        _failed.add(where)
        log.warning(
            "logger could not record %s %r in %s (%s: %s); training goes on, metrics.json keeps the run, and this "
            "process records no more runs there",
            group,
            name,
            where,
            type(error).__name__,
            error,
        )


def record_trial(cfg: DictConfig, run_dir: Path) -> None:
    """A trial (or single run) that wrote its ``metrics.json`` in ``run_dir``, as a run of its study."""
    in_sweep = cfg.sweep.trial is not None
    group = cfg.sweep.study if in_sweep else SINGLE_RUNS
    name = f"trial {cfg.sweep.trial}" if in_sweep else run_dir.name

    def make_run() -> RunRecord:
        metrics = json.loads((run_dir / METRICS_FILE).read_text())
        summary = {} if metrics["val_accuracy"] is None else {"val_accuracy": metrics["val_accuracy"]}
        return RunRecord(group, name, flat_params(cfg), metrics["history"], metrics["status"], summary)

    record(cfg, group, name, make_run)


def record_final(cfg: DictConfig, study_name: str, final_dir: Path) -> None:
    """The final retrain in ``final_dir`` (metrics, model, config), as the run ``final`` of its study."""

    def make_run() -> RunRecord:
        metrics = json.loads((final_dir / METRICS_FILE).read_text())
        summary = {key: metrics[key] for key in ("test_accuracy", "val_accuracy") if metrics.get(key) is not None}
        artifacts = [(final_dir / name).resolve() for name in (MODEL_FILE, CONFIG_FILE)]
        return RunRecord(study_name, "final", flat_params(cfg), metrics["history"], "complete", summary, artifacts)

    record(cfg, study_name, "final", make_run)
