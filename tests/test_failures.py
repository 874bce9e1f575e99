"""Every mistake gets one clear message, and a sweep never loses finished work (issue: bad input and failure)."""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from svhn_sweep.sweep.study import StudyRef
from tests.conftest import TEST_SIZE, TRAIN_SIZE, run_cli, start_cli

QUICK = ["trainer.epochs=1", "sweep.pruner=none"]
DIVERGING = ["optimizer=sgd", "model.batchnorm=none", "trainer.batch_size=32"]  # lr=50 blows up within an epoch


def study_of(cwd: Path):
    (sweep_dir,) = (cwd / "outputs" / "sweeps").iterdir()
    return StudyRef.from_sweep_dir(sweep_dir).load()


def assert_one_clear_message(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr[-2000:])


def no_trial_ran(cwd: Path) -> bool:
    return not list(cwd.glob("outputs/**/metrics.json"))


@pytest.mark.slow
def test_diverging_trials_fail_with_their_reason_and_the_sweep_goes_on(small_data, tmp_path: Path, run_main) -> None:
    result = run_main(
        [
            *["--multirun", *small_data, *QUICK, *DIVERGING, "optimizer.lr=choice(50.0,0.05)"],
            *["hydra.sweeper.n_trials=5", "hydra.sweeper.enqueue=[]"],  # the reference's lr 0.01 is not a choice
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials = study_of(tmp_path).trials
    diverged = [t for t in trials if t.params["optimizer.lr"] == 50.0]
    assert diverged and all(t.state == TrialState.FAIL for t in diverged)
    assert all(t.user_attrs["fail_reason"].startswith("diverged: loss became") for t in diverged)
    assert all(t.state == TrialState.COMPLETE for t in trials if t.params["optimizer.lr"] == 0.05)
    final_cfg = yaml.safe_load(next(tmp_path.glob("outputs/sweeps/*/final/config.yaml")).read_text())
    assert final_cfg["optimizer"]["lr"] == 0.05


def test_every_trial_failing_ends_with_one_error_and_no_final_retrain(small_data, tmp_path: Path, run_main) -> None:
    result = run_main(["--multirun", *small_data, *QUICK, *DIVERGING, "optimizer.lr=50.0", "hydra.sweeper.n_trials=2"])
    assert_one_clear_message(result, "No trial of study", "completed")
    assert [t.state for t in study_of(tmp_path).trials] == [TrialState.FAIL] * 2
    assert not list(tmp_path.glob("outputs/sweeps/*/final"))


BUGGY_MODEL = """
from svhn_sweep.core.models import MLP


class Buggy(MLP):
    def forward(self, x):
        if self[1].out_features == 256:
            raise RuntimeError("a bug in a custom model")
        return super().forward(x)
"""


@pytest.fixture
def buggy_model(tmp_path: Path) -> Path:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "buggy.py").write_text(BUGGY_MODEL)
    return tmp_path / "plugins"


def crashing_sweep(small_data, cwd: Path, plugins: Path, max_failure_rate: float, *args: str):
    return run_cli(
        [
            "--multirun",
            *small_data,
            *QUICK,
            "model._target_=buggy.Buggy",
            "model.hidden_sizes=choice([100],[256])",
            "hydra.sweeper.n_trials=6",
            f"hydra.sweeper.max_failure_rate={max_failure_rate}",
            *args,
        ],
        cwd=cwd,
        pythonpath=(plugins,),
        SVHN_SWEEP_TRUSTED_TARGETS="buggy.*",
    )


@pytest.mark.slow
def test_a_crashing_trial_is_recorded_with_its_error_and_the_sweep_goes_on(small_data, tmp_path, buggy_model):
    result = crashing_sweep(small_data, tmp_path, buggy_model, 0.9, "final.enabled=false")
    assert result.returncode == 0, result.stderr[-3000:]
    trials = study_of(tmp_path).trials
    crashed = [t for t in trials if t.params["model.hidden_sizes"] == "[256]"]
    assert crashed and all(t.state == TrialState.FAIL for t in crashed)
    for trial in crashed:
        assert trial.user_attrs["fail_reason"] == "error: RuntimeError: a bug in a custom model"
        run_dir = StudyRef.from_sweep_dir(next(tmp_path.glob("outputs/sweeps/*"))).run_dir(trial.user_attrs["run_dir"])
        assert "a bug in a custom model" in (run_dir / "error.txt").read_text()
    assert all(t.state == TrialState.COMPLETE for t in trials if t not in crashed)


@pytest.mark.slow
def test_too_many_crashes_stop_the_sweep_naming_the_failed_trials(small_data, tmp_path, buggy_model):
    result = crashing_sweep(small_data, tmp_path, buggy_model, max_failure_rate=0.0)
    trials = study_of(tmp_path).trials
    failed = [t.number for t in trials if t.state == TrialState.FAIL]
    assert_one_clear_message(
        result, f"trials failed in this command ({', '.join(map(str, failed))})", "max_failure_rate=0.0"
    )
    assert len(failed) == 1 and len(trials) < 6  # stopped at the first crash ...
    assert all(t.state == TrialState.COMPLETE for t in trials if t.number not in failed)  # ... keeping the rest
    assert not list(tmp_path.glob("outputs/sweeps/*/final"))

    # The bug fixed, the same command goes on: the budget counts this command's crashes, not the earlier ones.
    (buggy_model / "buggy.py").write_text(BUGGY_MODEL.replace("raise RuntimeError", "pass  #"))
    time.sleep(1)  # a new sweep folder (they are named by the second)
    result = crashing_sweep(small_data, tmp_path, buggy_model, max_failure_rate=0.0)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = StudyRef.from_sweep_dir(max(tmp_path.glob("outputs/sweeps/*"))).load().trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 5 and len(trials) == 6  # the crash counts


@pytest.mark.slow
def test_too_many_crashes_in_slots_stop_asking_and_the_trials_in_flight_finish(small_data, tmp_path, buggy_model):
    result = crashing_sweep(
        small_data, tmp_path, buggy_model, 0.0, "hydra/launcher=joblib", "hydra.sweeper.n_jobs=2", "final.epochs=1"
    )
    trials = study_of(tmp_path).trials
    failed = [t.number for t in trials if t.state == TrialState.FAIL]
    crashes = f"trials failed in this command ({', '.join(map(str, failed))})"
    assert_one_clear_message(result, crashes, "max_failure_rate=0.0")
    assert failed and len(trials) < 6 and not [t for t in trials if t.state == TrialState.RUNNING]
    assert all(t.user_attrs["fail_reason"].startswith("error: RuntimeError") for t in trials if t.number in failed)
    assert not list(tmp_path.glob("outputs/sweeps/*/final"))


@pytest.mark.slow
def test_missing_data_without_network_names_folder_files_and_the_offline_route(tmp_path: Path, run_main) -> None:
    root = tmp_path / "svhn $(touch pwned);touch pwned"  # nothing a user types reaches a shell
    for result in (run_main([f"data.root='{root}'"]), run_cli(["--multirun", f"data.root='{root}'"], cwd=tmp_path)):
        assert_one_clear_message(result, str(root), "train_32x32.mat", "test_32x32.mat", "data=synthetic")
    assert not list(tmp_path.rglob("pwned")) and no_trial_ran(tmp_path)


@pytest.mark.slow
def test_a_truncated_mat_is_named_with_what_to_do(synthetic_root: Path, tmp_path: Path) -> None:
    shutil.copytree(synthetic_root, tmp_path / "data")
    (mat,) = (tmp_path / "data").glob("*/train_32x32.mat")
    mat.write_bytes(mat.read_bytes()[:1000])
    for npz in (tmp_path / "data").glob("*/*.npz"):
        npz.unlink()
    result = run_cli(
        [
            "data=synthetic",
            f"data.root={tmp_path / 'data'}",
            f"data.train_size={TRAIN_SIZE}",
            f"data.test_size={TEST_SIZE}",
        ],
        cwd=tmp_path,
    )
    assert_one_clear_message(result, str(mat), "Delete it")
    assert not list((tmp_path / "data").glob("*/train_32x32.npz"))


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("optimizer.lr=-0.1", ["optimizer.lr=-0.1", "must be positive"]),
        ("data.val_fraction=1.5", ["data.val_fraction=1.5", "between 0 and 1"]),
        ("model.hidden_sizes=[]", ["model.hidden_sizes=[]", "at least one layer"]),
        ("model.batchnorm=sideways", ["sideways", "none, before, after", "model.batchnorm"]),
        ("model=resnet", ["model/resnet", "cnn", "mlp"]),
        ("optimizer.lr=tag(log,interval(0,1))", ["optimizer.lr", "low > 0"]),
        ("optimizer.weight_decay=interval(0.1,0.01)", ["optimizer.weight_decay", "low"]),
        ("hydra.sweeper.timeout=soon", ["hydra.sweeper.timeout='soon'", "90s, 15m or 2h"]),
        ("hydra.sweeper.trials_per_device=0", ["hydra.sweeper.trials_per_device=0", "must be >= 1"]),
        ("hydra.sweeper.n_trials=0", ["hydra.sweeper.n_trials=0", "must be >= 1"]),
        ("hydra.sweeper.n_trials=-3", ["hydra.sweeper.n_trials=-3", "must be >= 1"]),
        (
            "optimizer.lrr=tag(log,interval(1e-3,1e-1))",
            [
                "Search space entry 'optimizer.lrr=tag(log,interval(1e-3,1e-1))'",
                "Key 'lrr' not in",
                "Did you mean: 'lr'?",
            ],
        ),
        ("optimizer=choice(sgd,adamm)", ["'optimizer=choice(sgd,adamm)'", "adamm", "sgd"]),
        ("model.hidden_sizes=choice([100],[0])", ["model.hidden_sizes=[0]", "every size positive"]),
        ("'+hydra.sweeper.params={model.dropuot:0.3}'", ["model.dropuot", "Did you mean: 'dropout'?"]),
        ("seed=-1", ["seed=-1", "between 0 and 2**32 - 1"]),
        ("hydra.sweeper.enqueue=[{model.depth:2}]", ["hydra.sweeper.enqueue[0]", "['model.depth']", "does not have"]),
        ("hydra.sweeper.enqueue=[{optimizer.lr:5}]", ["hydra.sweeper.enqueue[0]", "optimizer.lr=5", "outside"]),
        ("hydra.sweeper.enqueue=[{model.hidden_sizes:[7]}]", ["enqueue[0]", "model.hidden_sizes='[7]'", "outside"]),
        (
            "search=mlp_layers hydra.sweeper.enqueue=[{layers:2,width_2:4096}]",
            ["enqueue[0]", "width_2=4096", "outside"],
        ),
        ("search=mlp_layers hydra.sweeper.enqueue=[{layers:1,width_2:64}]", ["['width_2']", "does not have"]),
        (
            "sweep.objectives=[val_accuracy,n_params]",
            ["hydra.sweeper.direction=[maximize,minimize]", "not ['maximize']"],
        ),
        ("final.select=smallest_within:0.01", ["final.select=smallest_within:0.01", "sweep.objectives"]),
        ("final.select=smallest", ["final.select='smallest'", "smallest_within:D"]),
        ("final.batch_size=0", ["final.batch_size=0", "must be null or >= 1"]),
        ("final.scheduler=cosin", ["final.scheduler='cosin'", "cosine"]),
    ],
)
def test_bad_config_or_search_space_is_rejected_before_any_trial(
    small_data, tmp_path, override, needles, run_main
) -> None:
    assert_one_clear_message(run_main(["--multirun", *small_data, *shlex.split(override)]), *needles)
    assert no_trial_ran(tmp_path)
    assert not (tmp_path / "outputs" / "optuna.db").exists() or not optuna.get_all_study_names(
        f"sqlite:///{tmp_path / 'outputs' / 'optuna.db'}"
    )  # no study either


def test_an_output_folder_that_cannot_be_created_stops_before_the_sweep(small_data, tmp_path, run_main) -> None:
    (tmp_path / "outputs").write_text("a file in the way")
    result = run_main(["--multirun", *small_data])
    assert_one_clear_message(result, "Cannot create the output folder", "hydra.sweep.dir")


def test_a_later_sweep_never_overwrites_run_folders(small_data, tmp_path: Path, run_main) -> None:
    shared = f"hydra.sweep.dir={tmp_path / 'shared'}"
    assert (
        run_main(
            ["--multirun", *small_data, *QUICK, "hydra.sweeper.n_trials=1", "final.enabled=false", shared]
        ).returncode
        == 0
    )
    before = (tmp_path / "shared" / "0" / "metrics.json").read_bytes()
    result = run_main(["--multirun", *small_data, *QUICK, "hydra.sweeper.n_trials=1", "seed=7", shared])
    assert_one_clear_message(result, "already exist from another sweep")
    assert (tmp_path / "shared" / "0" / "metrics.json").read_bytes() == before


@pytest.mark.slow
def test_final_retrain_survives_trials_missing_their_metrics(small_data, tmp_path: Path, run_main) -> None:
    args = ["--multirun", *small_data, *QUICK, "hydra.sweeper.study_name=partial"]
    assert run_main([*args, "hydra.sweeper.n_trials=2"]).returncode == 0
    for metrics in tmp_path.glob("outputs/sweeps/*/[0-9]*/metrics.json"):
        metrics.unlink()
    time.sleep(1)  # a new sweep folder (they are named by the second)
    result = run_main([*args, "hydra.sweeper.n_trials=3"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test accuracy" in result.stdout and len(list(tmp_path.glob("outputs/sweeps/*/final/metrics.json"))) == 2


@pytest.mark.slow
def test_ctrl_c_keeps_finished_trials_marks_the_running_one_and_resumes(small_data, tmp_path: Path) -> None:
    args = [
        "--multirun",
        *small_data,
        "trainer.epochs=10",
        *QUICK[1:],
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.study_name=interrupted",
        "final.enabled=false",
    ]
    sweep = start_cli(args, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while not list(tmp_path.glob("outputs/sweeps/*/study.yaml")):
        assert time.monotonic() < deadline and sweep.poll() is None, "the sweep did not start"
        time.sleep(0.2)
    study = study_of(tmp_path)
    while not (len(trials := study.trials) >= 2 and trials[1].intermediate_values):
        assert time.monotonic() < deadline and sweep.poll() is None, "the sweep never got into its second trial"
        time.sleep(0.2)
    sweep.send_signal(signal.SIGINT)
    stdout, stderr = sweep.communicate(timeout=60)
    assert sweep.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
    assert "run the same command to resume" in stderr
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert study.trials[1].user_attrs["fail_reason"] == "interrupted: SIGINT"
    assert "COMPLETE" in stdout and "FAIL" in stdout  # the summary shows what is there

    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # The interrupted trial does not count toward n_trials=3: its parameters are tried again first (trial 2).
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[2].params == trials[1].params and trials[2].system_attrs["retry_history"] == [1]
