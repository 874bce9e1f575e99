"""Reviewing a sweep: tables, the report command, the figures and the error analysis of the final model.

One small real ``--multirun`` (the session fixture) feeds most tests; an interrupted sweep is made by hand
(a study with a finished, an interrupted and a still running trial), and the error analysis is also checked
on small cases worked out by hand.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from svhn_sweep import final, report
from svhn_sweep.core.data import SyntheticSource
from svhn_sweep.core.evaluation import confusion_matrix, error_indices, load_test_predictions, top_confusions
from svhn_sweep.review.plots import confusion_matrix_figure, error_gallery
from svhn_sweep.review.results import (
    HISTORY_COLUMNS,
    final_metrics,
    history_table,
    importance_table,
    load_sweep,
    open_study,
    trials_table,
)
from svhn_sweep.sweep.study import StudyRef
from tests.conftest import REPO, TEST_SIZE, TRAIN_SIZE, Sweep

SEARCHED = {"hidden_sizes", "batchnorm", "optimizer", "lr", "weight_decay", "scheduler"}  # conf/search/mlp.yaml
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


REPORT = [sys.executable, "-m", "svhn_sweep.report"]
REPORT_ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def report_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*REPORT, *args], env=REPORT_ENV, capture_output=True, text=True, timeout=120)


# -- tables ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_trials_table_has_a_row_per_trial_with_state_params_and_run_facts(sweep: Sweep) -> None:
    study = open_study(sweep.dir)
    table = load_sweep(sweep.dir)
    columns = list(table.columns)
    assert columns[:3] == ["trial", "state", "val_accuracy"] and set(columns[3:-5]) == SEARCHED
    assert columns[-6:] == ["enqueued", "epochs", "duration_s", "fail_reason", "retry_of", "run_dir"]
    # the search enqueues the notebook's model: it runs first, and only it is marked
    assert table.set_index("trial")["enqueued"].sort_index().tolist() == [True, False, False, False]
    assert study.trials[0].params == {
        "model.hidden_sizes": "[100]",
        "model.batchnorm": "none",
        "optimizer": "sgd",
        "optimizer.lr": 0.01,
        "optimizer.weight_decay": 0.1,
        "scheduler": "none",
    }
    assert sorted(table["trial"]) == [0, 1, 2, 3]
    for _, rows in table.groupby("state", sort=False):  # complete trials first, each state best first
        assert rows["val_accuracy"].is_monotonic_decreasing
    for row in table.itertuples():
        trial = study.trials[row.trial]
        metrics = json.loads((Path(trial.user_attrs["run_dir"]) / "metrics.json").read_text())
        assert row.state == trial.state.name and row.val_accuracy == trial.value == metrics["val_accuracy"]
        assert row.lr == trial.params["optimizer.lr"] and row.hidden_sizes == trial.params["model.hidden_sizes"]
        assert row.epochs == metrics["epochs"] == 2 and row.run_dir == trial.user_attrs["run_dir"]
        assert row.duration_s == pytest.approx(trial.duration.total_seconds(), abs=0.01)

    ref = StudyRef.from_sweep_dir(sweep.dir)
    pd.testing.assert_frame_equal(load_sweep(storage=ref.storage, study_name=ref.study_name), table)
    with pytest.raises(ValueError, match="either a sweep folder or both"):
        load_sweep(storage=ref.storage)
    written = pd.read_csv(sweep.dir / "trials.csv")  # the end of the --multirun writes it
    pd.testing.assert_frame_equal(
        written[["trial", "state", "val_accuracy", "lr"]], table[["trial", "state", "val_accuracy", "lr"]]
    )


@pytest.mark.slow
def test_history_and_importance_tables(sweep: Sweep) -> None:
    study = open_study(sweep.dir)
    history = history_table(study)
    assert list(history.columns) == HISTORY_COLUMNS and len(history) == 4 * 2
    for trial in study.trials:
        curve = history[history["trial"] == trial.number].sort_values("epoch")
        assert curve["epoch"].tolist() == [1, 2] and set(curve["state"]) == {trial.state.name}
        assert curve["val_acc"].tolist() == [trial.intermediate_values[1], trial.intermediate_values[2]]

    importance = importance_table(study)
    assert set(importance["parameter"]) == SEARCHED
    assert importance["importance"].sum() == pytest.approx(1)
    # most important first, ties by name: the same order in every process (Optuna's own order is not)
    order = sorted(importance.itertuples(index=False), key=lambda row: (-row.importance, row.parameter))
    assert importance["parameter"].tolist() == [row.parameter for row in order]


@pytest.mark.slow
def test_final_retrain_is_kept_apart_with_its_test_predictions_in_dataset_order(sweep: Sweep, small_data) -> None:
    study = open_study(sweep.dir)
    final_row = final_metrics(sweep.dir)
    assert final_row["trial"] == study.best_trial.number and final_row["n_trials"] == 4
    assert final_row["train_size"] == TRAIN_SIZE and final_row["test_size"] == TEST_SIZE
    assert "history" not in final_row.index
    # final.epochs is the final step's length only: the trials trained trainer.epochs (2)
    assert final_row["epochs"] == 3 and set(load_sweep(sweep.dir)["epochs"]) == {2}
    assert OmegaConf.load(sweep.dir / "final" / "config.yaml").trainer.epochs == 3
    assert f"val accuracy {study.best_value:.4f} after 2 epochs) retrained for 3 epochs on train+val" in sweep.stdout
    predictions, truth = load_test_predictions(sweep.dir / "final")
    root = small_data[1].split("=", 1)[1]
    test = SyntheticSource(root, train_size=TRAIN_SIZE, test_size=TEST_SIZE).load("test")
    assert np.array_equal(truth, test.labels.numpy())
    assert final_row["test_accuracy"] == pytest.approx((predictions == truth).mean())
    matrix = confusion_matrix(predictions, truth)
    assert matrix.shape == (10, 10) and matrix.sum() == TEST_SIZE
    assert matrix.trace() == (predictions == truth).sum()
    assert (matrix.sum(axis=0) == np.bincount(truth, minlength=10)).all()  # columns are the truth
    assert (matrix.sum(axis=1) == np.bincount(predictions, minlength=10)).all()  # rows the predictions


# -- error analysis, on cases worked out by hand -------------------------------------------------------------
def test_confusion_matrix_has_predicted_rows_and_truth_columns_and_draws_its_counts() -> None:
    predictions = np.array([1, 1, 2, 0, 1, 9])
    truth = np.array([1, 2, 2, 1, 2, 9])
    expected = np.zeros((10, 10), dtype=int)
    expected[1, 1] = expected[2, 2] = expected[9, 9] = 1
    expected[1, 2] = 2  # predicted 1, truly 2: twice
    expected[0, 1] = 1  # predicted 0, truly 1
    matrix = confusion_matrix(predictions, truth)
    assert np.array_equal(matrix, expected) and matrix[2, 1] == 0
    assert top_confusions(matrix, 3) == [(1, 2), (0, 1)]  # most frequent first; the diagonal is no mistake

    cells = {
        (int(t.get_position()[1]), int(t.get_position()[0])): int(t.get_text())
        for t in confusion_matrix_figure(matrix).axes[0].texts
    }  # (row = y, column = x)
    assert cells == {(i, j): int(matrix[i, j]) for i in range(10) for j in range(10)}


def test_error_gallery_shows_exactly_the_samples_of_the_pair_as_stored() -> None:
    predictions = np.array([3, 5, 3, 3, 1, 3])
    truth = np.array([5, 5, 5, 3, 3, 5])
    images = np.arange(6 * 3 * 32 * 32, dtype=np.uint32).reshape(6, 3, 32, 32).astype(np.uint8)
    assert error_indices(predictions, truth, 3, 5).tolist() == [0, 2, 5]

    fig = error_gallery(images, predictions, truth, predicted=3, true=5, max_images=2)
    drawn = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(drawn) == 2
    for array, sample in zip(drawn, [0, 2], strict=True):
        assert np.array_equal(array, images[sample].transpose(1, 2, 0))  # HWC, uint8, not normalised
    assert fig.get_suptitle() == "Predicted 3, really 5: 3 test images, first 2 shown"


# -- figures and the report command ------------------------------------------------------------------------
@pytest.mark.slow
def test_the_sweep_folder_gets_its_figures(sweep: Sweep) -> None:
    predictions, truth = load_test_predictions(sweep.dir / "final")
    galleries = {f"errors_pred{p}_truth{t}.png" for p, t in top_confusions(confusion_matrix(predictions, truth), 3)}
    expected = {
        "optimization_history.png",
        "param_importances.png",
        "learning_curves.png",
        "confusion_matrix.png",
        *galleries,
    }
    assert len(galleries) == 3 and expected <= {p.name for p in (sweep.dir / "plots").iterdir()}
    for name in expected:
        assert (sweep.dir / "plots" / name).read_bytes()[:8] == PNG_MAGIC


@pytest.mark.slow
def test_report_prints_the_sorted_table_and_test_accuracy_and_exports(sweep: Sweep, tmp_path: Path) -> None:
    out = {ext: tmp_path / f"trials.{ext}" for ext in ("csv", "parquet", "md")}
    result = report_cli(
        str(sweep.dir), "--csv", str(out["csv"]), "--parquet", str(out["parquet"]), "--markdown", str(out["md"])
    )
    assert result.returncode == 0, result.stderr[-3000:]

    table = load_sweep(sweep.dir)
    assert printed_trials(result.stdout) == table["trial"].tolist()  # best val accuracy first
    marked = [line.split()[0] for line in result.stdout.splitlines() if "yes" in line.split()]
    assert marked == ["0"]  # the enqueued reference trial
    assert f"test accuracy {final_metrics(sweep.dir)['test_accuracy']:.4f}" in result.stdout
    summary = result.stdout.split("\nWrote ")[0]
    assert summary in sweep.stdout  # the end of the --multirun printed the same summary

    pd.testing.assert_frame_equal(pd.read_csv(out["csv"]), table, check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_parquet(out["parquet"]), table)
    assert out["md"].read_text().startswith("|   trial | state ")


@pytest.mark.slow
def test_report_into_a_reader_that_stops_early_still_exports_and_ends_quietly(sweep: Sweep, tmp_path: Path) -> None:
    report = subprocess.Popen(
        [*REPORT, str(sweep.dir), "--csv", str(tmp_path / "trials.csv")],
        env=REPORT_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    report.stdout.close()  # like `| head -0`: the pipe is gone before the report prints
    stderr = report.stderr.read()
    assert report.wait(timeout=120) == 0 and stderr == "", stderr
    assert pd.read_csv(tmp_path / "trials.csv")["trial"].tolist() == load_sweep(sweep.dir)["trial"].tolist()


@pytest.mark.slow
def test_report_draws_the_error_gallery_of_a_pair_it_is_asked_for(sweep: Sweep) -> None:
    predictions, truth = load_test_predictions(sweep.dir / "final")
    drawn = top_confusions(confusion_matrix(predictions, truth), 3)
    pair = next((p, t) for p in range(10) for t in range(10) if p != t and (p, t) not in drawn)
    gallery = sweep.dir / "plots" / f"errors_pred{pair[0]}_truth{pair[1]}.png"
    assert not gallery.exists()
    report.main([str(sweep.dir), "--pair", f"{pair[0]},{pair[1]}"])
    assert gallery.read_bytes()[:8] == PNG_MAGIC


def printed_trials(stdout: str) -> list[int]:
    """The trial numbers of the printed table, in printed order."""
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["trial", "state", "val_accuracy"])
    rows = lines[header + 1 : lines.index("", header)]
    return [int(row.split()[0]) for row in rows]


def test_report_says_in_one_line_what_is_wrong(tmp_path: Path, capsys, monkeypatch) -> None:
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and "not a sweep folder" in err

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if pyarrow were not installed
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(tmp_path), "--parquet", str(tmp_path / "t.parquet")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "pip install 'svhn-sweep[parquet]'" in err


# -- a sweep that did not finish ----------------------------------------------------------------------------
@pytest.fixture
def interrupted_sweep(tmp_path: Path) -> Path:
    """A study as an interrupted sweep leaves it: trial 0 complete, 1 interrupted, 2 still running."""
    ref = StudyRef(f"sqlite:///{tmp_path / 'optuna.db'}", "interrupted")
    study = optuna.create_study(storage=ref.storage, study_name=ref.study_name, direction="maximize")
    space = {
        "optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True),
        "model.hidden_sizes": CategoricalDistribution(["[100]", "[256]"]),
    }
    sweep_dir = tmp_path / "sweep"
    ref.save(sweep_dir)
    history = [
        {"epoch": e, "loss": 2.0 / e, "train_acc": 0.2 * e, "val_acc": 0.1 * e, "lr": 0.01, "seconds": 1.0}
        for e in (1, 2)
    ]
    for number, state in enumerate(["complete", "interrupted", "running"]):
        trial = study.ask(space)
        if state == "running":
            continue
        run_dir = sweep_dir / str(number)
        run_dir.mkdir()
        trial.set_user_attr("run_dir", str(run_dir))
        if state == "complete":
            (run_dir / "metrics.json").write_text(json.dumps({"status": "complete", "epochs": 2, "history": history}))
            study.tell(trial, 0.2)
        else:  # killed before it wrote metrics.json
            trial.set_user_attr("fail_reason", "interrupted: KeyboardInterrupt")
            study.tell(trial, state=TrialState.FAIL)
    return sweep_dir


def test_an_interrupted_sweep_reports_what_finished(interrupted_sweep: Path, capsys) -> None:
    study = open_study(interrupted_sweep)
    table = trials_table(study).set_index("trial")
    assert table["state"].tolist() == ["COMPLETE", "FAIL", "RUNNING"]
    assert table.loc[0, "val_accuracy"] == 0.2 and table.loc[0, "epochs"] == 2
    assert table.loc[1, "fail_reason"] == "interrupted: KeyboardInterrupt"
    assert table.loc[[1, 2], "epochs"].isna().all() and table.loc[[1, 2], "val_accuracy"].isna().all()
    assert history_table(study)["trial"].unique().tolist() == [0]
    importance = importance_table(study)
    assert importance.empty and "at least 2 complete trials" in importance.attrs["note"]
    assert final_metrics(interrupted_sweep) is None

    report.main([str(interrupted_sweep), "--plots", "--top", "2"])
    out = capsys.readouterr().out
    assert "3 trials: 1 COMPLETE, 1 FAIL, 1 RUNNING" in out and printed_trials(out) == [0, 1]
    assert "interrupted: KeyboardInterrupt" in out
    assert importance.attrs["note"] in out and "No final retrain" in out
    assert {p.name for p in (interrupted_sweep / "plots").iterdir()} == {
        "optimization_history.png",
        "learning_curves.png",
    }
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(interrupted_sweep), "--pair", "6,8"])
    assert exit_info.value.code == 2 and "error galleries need the final retrain" in capsys.readouterr().err


# -- the end of a --multirun --------------------------------------------------------------------------------
def test_a_failure_at_the_end_of_a_finished_sweep_is_exit_code_1_not_a_warning(
    sweep: Sweep, tmp_path: Path, monkeypatch, caplog
) -> None:
    copy = tmp_path / "sweep"
    shutil.copytree(sweep.dir, copy, ignore=shutil.ignore_patterns("plots", "trials.csv"))
    config = OmegaConf.create(
        {
            "hydra": {"sweep": {"dir": str(copy)}, "sweeper": {"heartbeat_interval": 10, "grace_period": 30}},
            "final": {"enabled": True, "top_k": 3},
        }
    )

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no space left for figures")

    monkeypatch.setattr(final, "write_plots", broken)
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exit_info:
        final.RetrainBest().on_multirun_end(config)  # the study has its final result: straight to figures
    assert exit_info.value.code == 1 and "no space left for figures" in caplog.text
    assert (copy / "trials.csv").exists()
