"""The benchmark's command works end to end on tiny data (its timings are not checked: no timed tests)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TEST_SIZE, TRAIN_SIZE, WITHOUT_HYDRA

pytestmark = pytest.mark.slow  # each test runs the real command in a subprocess

# Runs benchmarks/bench.py with Hydra, OmegaConf and Optuna unimportable, as on a GPU machine that has only torch.
RUN_BENCH_WITHOUT_HYDRA = (
    WITHOUT_HYDRA
    + """
import runpy
sys.argv = ['benchmarks/bench.py', *sys.argv[1:]]
runpy.run_path('benchmarks/bench.py', run_name='__main__')
"""
)


def bench(args: list[str], prelude: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run benchmarks/bench.py with ``args`` from the repository root, through ``prelude`` when given."""
    command = [sys.executable, "-c", prelude, *args] if prelude else [sys.executable, "benchmarks/bench.py", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)


def rows(table: str) -> list[str]:
    """The measurement column of a report's table, without its header."""
    return [line.split(" | ")[1] for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]


def test_quick_benchmark_runs_without_hydra_and_writes_its_table(tmp_path: Path) -> None:
    """--quick needs neither Hydra, OmegaConf nor Optuna, prints its rows and writes the same report to --out."""
    out = tmp_path / "gpu.md"
    result = bench(
        [
            "--quick",
            "--device",
            "cpu",
            "--train-size",
            "700",
            "--repeats",
            "1",
            "--cnn",
            "--no-compile",
            "--out",
            str(out),
        ],
        prelude=RUN_BENCH_WITHOUT_HYDRA,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.read_text() in result.stdout
    amx = "amx_bf16" in Path("/proc/cpuinfo").read_text().split()  # trainer.amp=auto is bf16 there: fp32 rows too
    assert rows(out.read_text()) == [
        "notebook pipeline: Dataset + DataLoader, batch 64, MLP 1×100, SGD; 1 epoch",
        "svhn_sweep fit, batch 64, same model and SGD; 1 epoch",
        "svhn_sweep fit, batch 256 (trainer.batch_size); 1 epoch",
        *(["the same in fp32 (trainer.amp=false); 1 epoch"] if amx else []),
        "fraction of the fp32 matmul peak that the batch-256 epoch reaches",
        f"small CNN (model=cnn), batch 256, {'bf16 autocast' if amx else 'fp32'}; 1 epoch",
        *(["small CNN, batch 256, fp32; 1 epoch"] if amx else []),
    ]
    assert "failed" not in out.read_text() and "560 train + 140 val" in out.read_text()


def test_benchmark_times_the_data_loads_on_the_synthetic_files(synthetic_root: Path, tmp_path: Path) -> None:
    """Without --quick it reads the synthetic files and ends with the first and the cached load."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    result = bench(
        [
            "--device",
            "cpu",
            "--data-root",
            str(root),
            "--train-size",
            str(TRAIN_SIZE),
            "--test-size",
            str(TEST_SIZE),
            "--repeats",
            "1",
            "--skip-sweep",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert rows(result.stdout)[-2:] == [
        f"first load of train_32x32.mat ({TRAIN_SIZE} rows) into tensors",
        "cached load of the same (.npz beside the .mat)",
    ]
    assert "failed" not in result.stdout and "SVHN-sized, not SVHN" in result.stdout


def test_throughput_benchmark_compares_trials_in_flight_on_the_same_trials(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """Its CPU rows on tiny data: one row per n_jobs, the second against the first, on the same seeded trials,
    which train to the same val accuracy alone and side by side.
    """
    out = tmp_path / "throughput.md"
    sizes = ["--train-size", str(TRAIN_SIZE), "--test-size", str(TEST_SIZE)]
    command = [sys.executable, "benchmarks/sweep_throughput.py", "--data-root", str(synthetic_root), *sizes]
    command += ["--mlp", "2", "1", "--threads", "1", "--out", str(out)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.read_text() in result.stdout and "failed" not in out.read_text()
    assert rows(out.read_text()) == [
        "mlp search, 2 trials x 1 epochs, 1 in flight (trials/min)",
        "mlp search, 2 trials x 1 epochs, 2 in flight (trials/min)",
    ]
    note = out.read_text().splitlines()[-1]
    assert "× one at a time; same trials as one at a time" in note
    # one thread per trial at both n_jobs: a trial's result does not depend on what runs beside it
    assert "val acc differs by at most 0.0000;" in note


def test_checkpoint_cost_benchmark_times_epochs_with_and_without_checkpoints(tmp_path: Path) -> None:
    """Its four rows on tiny data, the cost judged against its target, no checkpoint left behind."""
    out = tmp_path / "checkpoint.md"
    command = [sys.executable, "benchmarks/checkpoint_cost.py", "--train-size", "700", "--repeats", "1"]
    command += ["--dir", str(tmp_path / "disk"), "--out", str(out)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.read_text() in result.stdout and "failed" not in out.read_text()
    assert rows(out.read_text()) == [
        "fit, default MLP, no checkpoints; 1 epoch",
        "the same, checkpoint.pt after every epoch; 1 epoch",
        "one checkpoint of the trained state, written alone",
        "a checkpoint's cost as a fraction of an epoch (row 3 / row 1)",
    ]
    assert "< 5 %: " in out.read_text() and "model.hidden_sizes=[100]" in out.read_text()
    assert list((tmp_path / "disk").iterdir()) == []


def test_peer_script_benchmark_times_the_script_and_the_sweep_on_the_same_configs(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """One repeat on tiny data: a row for the script and one for the sweep, and for each of them the 8 configs'
    3 epochs, stamped in seconds since its process started, within its wall time.
    """
    timelines = tmp_path / "timelines.json"
    sizes = ["--train-size", str(TRAIN_SIZE), "--test-size", str(TEST_SIZE)]
    command = [sys.executable, "benchmarks/peer_script.py", "--data-root", str(synthetic_root), *sizes]
    command += ["--repeats", "1", "--quality", "0", "--json", str(timelines)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert rows(result.stdout) == ["script", "sweep"]
    runs = json.loads(timelines.read_text())
    for run in runs:
        assert sorted((e["trial"], e["epoch"]) for e in run["epochs"]) == [(t, e) for t in range(8) for e in (1, 2, 3)]
        assert all(0 < e["time"] < run["wall_s"] for e in run["epochs"])
        assert run["best_val_acc"] == max(e["val_acc"] for e in run["epochs"])
        assert run["time_to"]["0.0"] == min(e["time"] for e in run["epochs"])  # every epoch reaches 0
    assert "the sweep reaches the script's best val accuracy in" in result.stdout


def test_batch_size_benchmark_prints_each_batch_size_s_curves(synthetic_root: Path, tmp_path: Path) -> None:
    """Tiny data: a row per batch size in both tables, the learning rate scaled with the batch, every trial's
    epoch on the trials' curve and every retrain epoch on the final's, in time order.
    """
    curves = tmp_path / "curves.json"
    sizes = ["--train-size", str(TRAIN_SIZE), "--test-size", str(TEST_SIZE)]
    command = [sys.executable, "benchmarks/batch_size.py", "--data-root", str(synthetic_root), *sizes]
    command += ["--batch-sizes", "64", "128", "--epochs", "1", "--final-epochs", "2", "--json", str(curves)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    first_cells = [line.split(" | ")[0][2:] for line in result.stdout.splitlines() if line.startswith("| ")]
    assert first_cells == ["batch, lr", "64 (linear), lr 0.005", "128 (linear), lr 0.01"] * 2
    recorded = json.loads(curves.read_text())
    assert recorded["lr"] == {"64 (linear)": 0.005, "128 (linear)": 0.01}
    trials, final = recorded["curves"].values()
    for stage, epochs in ((trials, 8), (final, 2)):
        for points in stage.values():
            times = [seconds for seconds, _ in points]
            assert len(points) == epochs and times == sorted(times)


def test_step_cost_benchmark_splits_each_step_s_time_into_its_parts() -> None:
    """A row per model and batch size, with the epoch against its matrix products and a breakdown of 100 %."""
    command = [sys.executable, "benchmarks/step_cost.py", "--models", "100", "--batch-sizes", "64", "128"]
    command += ["--train-size", "700", "--repeats", "1", "--threads", "1"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    table = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| 100 |")]
    assert [cells[1] for cells in table] == ["64", "128"]
    for cells in table:
        shares = [float(cell.strip(" |%")) for cell in cells[5:]]
        assert len(shares) == 8 and sum(shares) == pytest.approx(100, abs=5)  # rounded to whole percents
        assert shares[0] > 0 and shares[1] > 0  # the matmuls and the optimizer step are found


def test_cpu_precision_benchmark_times_each_pyramid_in_fp32_and_bf16() -> None:
    """A row per default pyramid and batch size: both epochs, and the speed-up as their ratio."""
    command = [sys.executable, "benchmarks/cpu_precision.py", "--batch-sizes", "64", "--train-size", "3000"]
    result = subprocess.run([*command, "--repeats", "1"], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    rows = [line.strip("|").split(" | ") for line in lines]
    assert [row[0].strip() for row in rows] == ["100", "256", "512", "1024", "256-128", "512-256", "1024-256",
                                                "512-256-128"]  # fmt: skip
    for _, batch, fp32, bf16, ratio in rows:
        assert batch == "64"
        assert float(ratio.strip(" x")) == pytest.approx(float(fp32[:-2]) / float(bf16[:-2]), rel=0.05)


def test_barrier_benchmark_compares_batches_with_asynchronous_slots(synthetic_root: Path, tmp_path: Path) -> None:
    """--barrier on tiny data: per mode its trials per minute, the slots' utilisation and the per-trial overhead,
    from the trials' own clocks.
    """
    out = tmp_path / "barrier.md"
    sizes = ["--train-size", str(TRAIN_SIZE), "--test-size", str(TEST_SIZE)]
    command = [sys.executable, "benchmarks/sweep_throughput.py", "--barrier", "--data-root", str(synthetic_root)]
    command += [*sizes, "--mlp", "3", "1", "--out", str(out)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    report = out.read_text()
    assert report in result.stdout and "failed" not in report
    shape = "mlp search, 3 trials x 1 epochs, median pruner, 2 slots"
    assert rows(report) == [
        f"{shape}, {mode}: {what}"
        for mode in ("batch", "async")
        for what in ("trials per minute", "utilisation of the slots", "slot free -> next trial training")
    ]
    assert "waiting for the batch's slowest trial" in report and "≥ 90 %:" in report  # the async target, judged
    assert "a worker read the train file at most 1x" in report
