"""The experiment trackers: a real sweep read back with TensorBoard's event reader and MLflow's client, and a
tracker that fails never failing a run.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from svhn_sweep.core.errors import ConfigError
from svhn_sweep.review.results import final_metrics, open_study
from svhn_sweep.sweep.loggers import MLflowLogger, RunRecord, TensorBoardLogger, run_logger
from svhn_sweep.sweep.trial import train_and_validate
from tests.conftest import free_port, run_folder

HISTORY = [{"epoch": 1, "loss": 1.5, "train_acc": 0.3, "val_acc": 0.25, "lr": 0.1, "seconds": 1.0}]
EPOCHS = {"loss": "loss", "train_acc": "train_acc", "val_acc": "val_acc"}  # metrics.json key -> tracker's key


def run_history(run_dir: str | Path) -> list[dict]:
    return json.loads((Path(run_dir) / "metrics.json").read_text())["history"]


def same_curve(logged: list[tuple[int, float]], history: list[dict], key: str) -> bool:
    """The (step, value) pairs a tracker holds are the epochs of ``metrics.json`` (float32 in TensorBoard)."""
    return [step for step, _ in logged] == [epoch["epoch"] for epoch in history] and [
        value for _, value in logged
    ] == pytest.approx([epoch[key] for epoch in history], rel=1e-6)


def tensorboard_run(folder: Path) -> tuple[EventAccumulator, dict]:
    """The run's events and its hyper-parameters as the HParams dashboard reads them."""
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    return events, plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams


@pytest.mark.slow
def test_a_sweep_is_read_back_from_tensorboard_then_mlflow(run_main, small_data, tmp_path: Path) -> None:
    """Two trials to TensorBoard; the same command with logger=mlflow resumes the same study (the tracker is no part
    of the experiment) with a third trial, which goes to MLflow with the new final retrain.
    """
    sweep = ["--multirun", *small_data, "trainer.epochs=2", "sweep.pruner=none"]  # every trial complete
    assert run_main([*sweep, "hydra.sweeper.n_trials=2", "logger=tensorboard"]).returncode == 0
    first, *_ = sorted((tmp_path / "outputs" / "sweeps").iterdir())
    study = open_study(first)
    (group,) = (tmp_path / "outputs" / "tensorboard").iterdir()
    assert group.name == study.study_name
    assert {run.name for run in group.iterdir()} == {"trial_0", "trial_1", "final"}
    for trial in study.trials:
        events, hparams = tensorboard_run(group / f"trial_{trial.number}")
        history = run_history(run_folder(study, trial))
        for ours, theirs in EPOCHS.items():
            assert same_curve([(e.step, e.value) for e in events.Scalars(theirs)], history, ours)
        assert events.Scalars("val_accuracy")[-1].value == pytest.approx(trial.value)
        assert events.Tensors("status/text_summary")[0].tensor_proto.string_val == [b"complete"]
        assert hparams["optimizer.lr"].number_value == pytest.approx(trial.params["optimizer.lr"])
        assert hparams["model.hidden_sizes"].string_value == str(json.loads(trial.params["model.hidden_sizes"]))
        assert hparams["status"].string_value == "complete"
    events, _ = tensorboard_run(group / "final")
    assert events.Scalars("test_accuracy")[0].value == pytest.approx(final_metrics(first)["test_accuracy"])
    assert events.Tensors("artifacts/text_summary")[0].tensor_proto.string_val == [
        str(first / "final" / "model.pt").encode()
    ]

    assert run_main([*sweep, "hydra.sweeper.n_trials=3", "logger=mlflow"]).returncode == 0
    second = max((tmp_path / "outputs" / "sweeps").iterdir())
    assert open_study(second).study_name == study.study_name and len(open_study(second).trials) == 3
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=[study.study_name]).set_index("tags.mlflow.runName")
    assert sorted(runs.index) == ["final", "trial 2"]
    trial = open_study(second).trials[2]
    row = runs.loc["trial 2"]
    assert row["status"] == "FINISHED" and row["tags.status"] == "complete" and row["tags.study"] == study.study_name
    assert row["metrics.val_accuracy"] == pytest.approx(trial.value)
    assert float(row["params.optimizer.lr"]) == pytest.approx(trial.params["optimizer.lr"])
    client = MlflowClient()
    for ours, theirs in EPOCHS.items():
        logged = sorted((m.step, m.value) for m in client.get_metric_history(row["run_id"], theirs))
        assert same_curve(logged, run_history(run_folder(study, trial)), ours)
    final = runs.loc["final"]
    assert final["metrics.test_accuracy"] == pytest.approx(final_metrics(second)["test_accuracy"])
    artifacts = {a.path: a.file_size for a in client.list_artifacts(final["run_id"])}
    model = second / "final" / "model.pt"
    assert artifacts == {
        "model.pt": model.stat().st_size,
        "config.yaml": (second / "final" / "config.yaml").stat().st_size,
    }
    assert Path(final["artifact_uri"].removeprefix("file://")).is_relative_to(tmp_path / "outputs" / "mlartifacts")


@pytest.mark.parametrize("tracker", ["mlflow", "tensorboard"])
def test_a_tracker_that_fails_warns_once_and_never_fails_a_run(
    tracker: str, compose_cfg, small_data, tmp_path: Path, caplog
) -> None:
    """MLflow: a server nobody answers on; TensorBoard: a log folder under a file. Two runs, one warning."""
    in_the_way = tmp_path / "a file"
    in_the_way.write_text("")
    target = {
        "mlflow": ["logger=mlflow", f"logger.tracking_uri=http://127.0.0.1:{free_port()}"],
        "tensorboard": ["logger=tensorboard", f"logger.log_dir='{in_the_way / 'tb'}'"],
    }[tracker]
    cfg = compose_cfg(*small_data, "trainer.epochs=1", *target)
    with caplog.at_level(logging.WARNING, logger="svhn_sweep.sweep.loggers"):
        for run in ("run1", "run2"):
            (tmp_path / run).mkdir()
            assert 0 <= train_and_validate(cfg, tmp_path / run) <= 1
            assert json.loads((tmp_path / run / "metrics.json").read_text())["status"] == "complete"
    (warning,) = caplog.records
    assert "logger could not record runs 'run1'" in warning.getMessage()
    assert run_logger(cfg).where in warning.getMessage() and "training goes on" in warning.getMessage()


def test_a_missing_tracker_package_stops_a_sweep_before_training(run_main, small_data, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if mlflow were not installed
    result = run_main(["--multirun", *small_data, "logger=mlflow"])
    assert result.returncode == 1
    assert "logger=mlflow needs the mlflow package, which is not installed: pip install -e '.[mlflow]'" in result.stderr


def test_logger_none_is_the_default_and_the_options_have_their_defaults(compose_cfg, monkeypatch) -> None:
    assert compose_cfg().logger is None
    assert compose_cfg("logger=tensorboard").logger.log_dir == "outputs/tensorboard"
    assert compose_cfg("logger=mlflow").logger.tracking_uri == "sqlite:///outputs/mlflow.db"
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(ConfigError, match=r"logger=tensorboard needs the tensorboard package.*'\.\[tensorboard\]'"):
        run_logger(compose_cfg("logger=tensorboard")).check()


def test_pruned_and_diverged_runs_are_written_with_their_state(tmp_path: Path) -> None:
    """A pruned trial (its epochs so far) and one that diverged in its first epoch (no epoch, no accuracy)."""
    pruned = RunRecord("study", "trial 0", {"optimizer.lr": 0.1}, HISTORY, "pruned", {"val_accuracy": 0.25})
    diverged = RunRecord("study", "trial 1", {"optimizer.lr": 50.0}, [], "diverged", {})
    board = TensorBoardLogger(str(tmp_path / "tb"))
    tracker = MLflowLogger(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for run in (pruned, diverged):
        board.write(run)
        tracker.write(run)
    for run in (pruned, diverged):
        events, hparams = tensorboard_run(tmp_path / "tb" / "study" / run.name.replace(" ", "_"))
        assert events.Tensors("status/text_summary")[0].tensor_proto.string_val == [run.status.encode()]
        assert hparams["optimizer.lr"].number_value == run.params["optimizer.lr"]
    assert [e.value for e in tensorboard_run(tmp_path / "tb" / "study" / "trial_0")[0].Scalars("val_acc")] == [0.25]
    mlflow.set_tracking_uri(tracker.tracking_uri)
    runs = mlflow.search_runs(experiment_names=["study"]).set_index("tags.mlflow.runName")
    assert runs.loc["trial 0", "status"] == "KILLED" and runs.loc["trial 0", "metrics.val_accuracy"] == 0.25
    assert runs.loc["trial 1", "status"] == "FAILED" and runs.loc["trial 1", "tags.status"] == "diverged"
