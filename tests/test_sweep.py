import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli

pytestmark = pytest.mark.slow  # each test runs the real command in a subprocess


def test_multirun_searches_then_retrains_the_best_and_scores_it_on_test(small_data, tmp_path: Path) -> None:
    result = run_cli(["--multirun", *small_data, "hydra.sweeper.n_trials=3", "trainer.epochs=1"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "outputs" / "sweeps").iterdir()
    trial_metrics = [json.loads((sweep_dir / str(n) / "metrics.json").read_text()) for n in range(3)]
    assert all(0.0 <= m["val_accuracy"] <= 1.0 and m["epochs"] == 1 for m in trial_metrics)

    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(m["val_accuracy"] for m in trial_metrics)

    final = json.loads((sweep_dir / "final" / "metrics.json").read_text())
    assert 0.0 <= final["test_accuracy"] <= 1.0
    assert final["trained_on"] == "train+val" and final["test_size"] == 200 and final["train_size"] == 600
    assert (sweep_dir / "final" / "model.pt").stat().st_size > 0
    final_cfg = yaml.safe_load((sweep_dir / "final" / "config.yaml").read_text())
    params = best["best_params"]
    assert final_cfg["optimizer"]["_target_"].lower() == f"torch.optim.{params['optimizer']}"
    assert final_cfg["optimizer"]["lr"] == pytest.approx(params["optimizer.lr"])
    assert final_cfg["optimizer"]["weight_decay"] == pytest.approx(params["optimizer.weight_decay"])
    assert final_cfg["model"]["hidden_sizes"] == yaml.safe_load(params["model.hidden_sizes"])
    assert final_cfg["model"]["batchnorm"] == params["model.batchnorm"]
    assert (final_cfg["scheduler"] is None) == (params["scheduler"] == "none")
    assert f"test accuracy {final['test_accuracy']:.4f}" in result.stdout
    assert "Trials of study" in result.stdout and "COMPLETE" in result.stdout


def test_single_run_prints_and_saves_val_accuracy(small_data, tmp_path: Path) -> None:
    result = run_cli([*small_data, "trainer.epochs=2"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and len(metrics["history"]) == 2
    assert metrics["val_accuracy"] == metrics["history"][-1]["val_acc"]
    assert f"val_accuracy {metrics['val_accuracy']:.4f}" in result.stdout + result.stderr
