"""The final result a reader sees is the study's, and a sweep folder can move (issue 17 items 6 and 7).

One tiny sweep, its final step redone by ``svhn-sweep-final`` with another length (``final-2``), then the whole
``outputs/`` copied to another folder and the original deleted: every reader works on the copy and reads
``final-2``, unless told ``--final`` / ``final_dir=``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml
from nbclient import NotebookClient
from PIL import Image

from svhn_sweep import load_final_model
from svhn_sweep.core.evaluation import confusion_matrix, load_test_predictions, top_confusions
from svhn_sweep.review.plots import load_test_images
from svhn_sweep.review.results import final_folder, final_metrics, load_sweep, open_study
from svhn_sweep.sweep.lease import RESULT_ATTR
from tests.conftest import REPO, cli_env, run_cli


def command(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m svhn_sweep.<module> ARGS``, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", f"svhn_sweep.{module}", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def moved(small_data: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep folder of a 2-trial sweep whose final step (1 epoch) was redone for 2 epochs into ``final-2``,
    in a copy of ``outputs/`` whose original is gone.
    """
    first = tmp_path_factory.mktemp("first")
    args = ["--multirun", *small_data, "hydra.sweeper.n_trials=2", "trainer.epochs=1", "final.epochs=1"]
    result = run_cli([*args, "sweep.pruner=none"], cwd=first)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = (first / "outputs" / "sweeps").iterdir()
    redo = command("final", str(sweep_dir), "trainer.epochs=2", cwd=first)
    assert redo.returncode == 0, redo.stderr[-3000:]
    assert (sweep_dir / "final-2" / "metrics.json").exists()

    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shutil.copytree(first / "outputs", elsewhere / "outputs")
    shutil.rmtree(first / "outputs")
    return elsewhere / "outputs" / "sweeps" / sweep_dir.name


def predicted(out: str) -> list[int]:
    return [int(line.split(": ")[1].split()[0]) for line in out.splitlines()]


@pytest.mark.slow
def test_every_reader_reads_the_final_step_the_study_records_or_the_one_it_is_told(moved: Path, tmp_path: Path) -> None:
    study = open_study(moved)
    assert final_folder(moved) == moved / "final-2" and study.user_attrs[RESULT_ATTR]["epochs"] == 2
    newest, first = final_metrics(moved), final_metrics(moved, "final")
    assert newest["epochs"] == 2 and first["epochs"] == 1

    # load_final_model, and final_dir= for the other one
    assert load_final_model(moved).config.trainer.epochs == 2
    assert load_final_model(moved, final_dir="final").config.trainer.epochs == 1

    # svhn-sweep-predict on the whole test file, as PNGs: final-2's predictions; --final final: the first one's
    predictions, truth = load_test_predictions(moved / "final-2")
    paths = []
    for index, pixels in enumerate(load_test_images(moved / "final-2", truth)):
        paths.append(tmp_path / f"{index:04d}.png")
        Image.fromarray(pixels.transpose(1, 2, 0)).save(paths[-1])
    chosen = command("predict", str(moved), *map(str, paths), cwd=tmp_path)
    assert chosen.returncode == 0, chosen.stderr[-3000:]
    assert np.array_equal(predicted(chosen.stdout), predictions)
    earlier = command("predict", str(moved), *map(str, paths), "--final", "final", cwd=tmp_path)
    assert np.array_equal(predicted(earlier.stdout), load_test_predictions(moved / "final")[0])
    assert not np.array_equal(predictions, load_test_predictions(moved / "final")[0])  # the check can tell them apart

    # the report's final line, and its figures: the confusion matrix and galleries of final-2's mistakes
    report = command("report", str(moved), "--plots", cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "retrained for 2 epochs" in report.stdout
    assert f"test accuracy {newest['test_accuracy']:.4f}, in {moved / 'final-2'}" in report.stdout
    galleries = {f"errors_pred{p}_truth{t}.png" for p, t in top_confusions(confusion_matrix(predictions, truth), 3)}
    drawn = {path.name for path in (moved / "plots").iterdir()}
    assert "confusion_matrix.png" in drawn and galleries <= drawn
    told = command("report", str(moved), "--final", "final", cwd=tmp_path)
    assert "retrained for 1 epochs" in told.stdout and f"test accuracy {first['test_accuracy']:.4f}\n" in told.stdout

    # what is no final step is said so
    missing = command("report", str(moved), "--final", "final-9", "--plots", cwd=tmp_path)
    assert missing.returncode == 2 and f"No {moved / 'final-9' / 'test_predictions.npz'}" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.slow
def test_a_copied_outputs_folder_is_reviewed_without_its_original(moved: Path) -> None:
    """study.yaml names the SQLite study relative to the sweep folder, the trials their run folders relative to it:
    the copy's tables, learning curves and notebook come from the copy.
    """
    assert yaml.safe_load((moved / "study.yaml").read_text())["storage"] == "sqlite:///../../optuna.db"
    trials = load_sweep(moved)
    assert len(trials) == 2 and set(trials["epochs"]) == {1}  # each trial's metrics.json, found in the copy
    assert all(Path(run_dir).parent == moved for run_dir in trials["run_dir"])

    notebook = nbformat.read(REPO / "notebooks" / "review_sweep.ipynb", as_version=4)
    client = NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(moved)}})
    client.execute(env=cli_env(SVHN_SWEEP_DIR=str(moved)))  # raises CellExecutionError on a failing cell
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    html = "\n".join(o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {}))
    final = final_metrics(moved)
    assert final["epochs"] == 2 and f"<td>{final['test_accuracy']}</td>" in html  # final-2, the study's
    predictions, truth = load_test_predictions(moved / "final-2")
    shown = re.findall(r"<td>(\d)</td>\s*<td>(\d)</td>\s*<td>[\d.]+</td>", html)
    assert [(int(t), int(p)) for t, p in shown] == list(zip(truth[:8], predictions[:8], strict=True))
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) == 4 + len(top_confusions(confusion_matrix(predictions, truth), 3))  # learning curves too
