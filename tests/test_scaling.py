"""Pruning, resume, parallel and distributed sweeps, each through the real command: in this process where one
process is all the behaviour needs (``run_main``), in fresh ones where processes are the point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from svhn_sweep.review.results import load_sweep
from svhn_sweep.sweep.study import StudyRef
from tests.conftest import run_cli, run_folder, start_cli

pytestmark = pytest.mark.slow  # each test runs the real command in a subprocess

FINISHED = {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL}


def sweep_dirs(cwd: Path) -> list[Path]:
    return sorted((cwd / "outputs" / "sweeps").iterdir())


def study_of(cwd: Path) -> optuna.Study:
    return StudyRef.from_sweep_dir(sweep_dirs(cwd)[-1]).load()


Runner = Callable[[list[str]], subprocess.CompletedProcess[str]]


def sweep(run: Runner, small_data: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    result = run(["--multirun", *small_data, *args])
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def in_subprocess(cwd: Path) -> Runner:
    return lambda args: run_cli(args, cwd=cwd)


def test_rerunning_the_same_command_resumes_until_n_trials_in_total(small_data, tmp_path: Path, run_main) -> None:
    sweep(run_main, small_data, "trainer.epochs=1", "hydra.sweeper.n_trials=3", "final.enabled=false")
    first = {t.number: (t.value, t.datetime_complete) for t in study_of(tmp_path).trials}
    result = sweep(run_main, small_data, "trainer.epochs=1", "hydra.sweeper.n_trials=5")
    study = study_of(tmp_path)
    assert "3 of 5 trials already finished" in result.stdout + result.stderr
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert [t.user_attrs.get("enqueued", False) for t in study.trials] == [True] + [False] * 4  # enqueued once
    assert {n: (t.value, t.datetime_complete) for n, t in enumerate(study.trials) if n < 3} == first
    # the summary covers all five, and the final retrain ran for the five
    assert all(f" {n} COMPLETE" in result.stdout.replace("  ", " ") for n in range(5))
    assert (sweep_dirs(tmp_path)[-1] / "final" / "metrics.json").exists()


def test_pruned_trials_are_recorded_as_pruned_and_stop_early(small_data, tmp_path: Path, run_main) -> None:
    args = [
        "trainer.epochs=4",
        "hydra.sweeper.n_trials=8",
        "sweep.pruner.n_startup_trials=2",
        "sweep.pruner.n_warmup_steps=0",
        "final.enabled=false",
    ]
    sweep(run_main, small_data, *args)
    study = study_of(tmp_path)
    states = {t.number: t.state for t in study.trials}
    assert TrialState.PRUNED in states.values() and TrialState.COMPLETE in states.values()
    table = load_sweep(sweep_dirs(tmp_path)[-1]).set_index("trial")
    for trial in study.trials:
        metrics = json.loads((run_folder(study, trial) / "metrics.json").read_text())
        assert table.loc[trial.number, "state"] == trial.state.name
        if trial.state == TrialState.PRUNED:
            assert metrics["status"] == "pruned" and metrics["epochs"] < 4
            assert trial.last_step == metrics["epochs"]  # the value Optuna keeps is the last reported epoch
        else:
            assert metrics["epochs"] == 4 and len(trial.intermediate_values) == 4


def test_joblib_runs_unpruned_trials_in_parallel_processes_that_load_data_once(small_data, tmp_path: Path) -> None:
    sweep(
        in_subprocess(tmp_path),
        small_data,
        "trainer.epochs=2",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.trials_per_device=2",  # n_jobs null: 2 on the one device, the CPU
        "sweep.pruner=none",
        "hydra/launcher=joblib",
        "final.enabled=false",
    )
    study, ref = study_of(tmp_path), StudyRef.from_sweep_dir(sweep_dirs(tmp_path)[-1])
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6  # sweep.pruner=none: nothing pruned
    assert all(len(t.intermediate_values) == 2 for t in study.trials)
    run_dirs = [ref.run_dir(t.user_attrs["run_dir"]) for t in study.trials]  # recorded relative to the study
    processes = [json.loads((run_dir / "metrics.json").read_text())["process"] for run_dir in run_dirs]
    assert {p["pid"] for p in processes} != {os.getpid()} and len({p["pid"] for p in processes}) >= 2
    assert len({p["pid"] for p in processes}) < 6  # workers are reused across trials ...
    assert max(p["data_disk_reads"] for p in processes) == 1  # ... and each read the train file once
    assert {p["torch_threads"] for p in processes} == {max(1, (os.cpu_count() or 1) // 2)}
    assert {p["device"] for p in processes} == {"cpu"}  # no CUDA device: the slots change nothing
    overrides = [yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) for run_dir in run_dirs]
    slots = [next(o for o in job if o.startswith("sweep.slot=")) for job in overrides]
    # two slots, refilled as they free up: each trial's slot (which picks its card) is one of them
    assert slots[:2] == ["sweep.slot=0", "sweep.slot=1"] and set(slots) == {"sweep.slot=0", "sweep.slot=1"}


def test_submitit_local_executor_runs_the_sweep(small_data, tmp_path: Path) -> None:
    sweep(
        in_subprocess(tmp_path),
        small_data,
        "trainer.epochs=1",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
        "final.enabled=false",
    )
    assert [t.state for t in study_of(tmp_path).trials] == [TrialState.COMPLETE] * 2


def test_kill_9_mid_trial_then_the_same_command_resumes(small_data, tmp_path: Path) -> None:
    args = [
        "--multirun",
        *small_data,
        "trainer.epochs=10",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.study_name=killed",
        "hydra.sweeper.heartbeat_interval=1",
        "hydra.sweeper.grace_period=2",
        "final.enabled=false",
    ]
    worker = start_cli(args, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    while not list((tmp_path / "outputs").glob("sweeps/*/study.yaml")):  # the study exists from then on
        assert time.monotonic() < deadline and worker.poll() is None, "the sweep did not start"
        time.sleep(0.2)
    study = StudyRef.from_sweep_dir(sweep_dirs(tmp_path)[0]).load()
    while not (
        len(trials := study.trials) >= 2 and trials[1].state == TrialState.RUNNING and trials[1].intermediate_values
    ):
        assert time.monotonic() < deadline and worker.poll() is None, "the sweep never got into its second trial"
        time.sleep(0.2)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    before = study.trials
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.RUNNING]
    time.sleep(3)  # let the killed trial's heartbeat go stale (grace_period=2)

    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    after = study.trials
    # The killed trial went stale: it does not count toward n_trials=3, and its parameters were tried again first.
    assert [t.state for t in after] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert after[2].params == after[1].params and after[2].system_attrs["retry_history"] == [1]
    assert (after[0].value, after[0].datetime_complete) == (before[0].value, before[0].datetime_complete)


SLOW_HOOK = """
import time

def hook(cfg, trial):
    if trial.study.study_name == "asked" and trial.number == 1:  # not the checks' trials on throw-away studies
        time.sleep(600)
    return {}
"""


def test_kill_9_between_asking_a_trial_and_launching_it_then_the_same_command_retries_it(
    small_data, tmp_path: Path, monkeypatch
) -> None:
    # A trial is RUNNING from the moment it is asked; until it first beats, no stale check can ever end it. Killed
    # while composing its config (a slow custom_search_space hook holds it there), it must still go stale.
    (tmp_path / "slow_hook.py").write_text(SLOW_HOOK)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("SVHN_SWEEP_TRUSTED_TARGETS", "slow_hook.hook")
    args = ["--multirun", *small_data, "trainer.epochs=1", "hydra.sweeper.n_trials=2", "final.enabled=false"]
    args += ["hydra.sweeper.custom_search_space=slow_hook.hook", "hydra.sweeper.study_name=asked"]
    args += ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2"]
    worker = start_cli(args, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    while not list((tmp_path / "outputs").glob("sweeps/*/study.yaml")):
        assert time.monotonic() < deadline and worker.poll() is None, "the sweep did not start"
        time.sleep(0.2)
    study = StudyRef.from_sweep_dir(sweep_dirs(tmp_path)[0]).load()
    while not (len(trials := study.trials) == 2 and trials[1].state == TrialState.RUNNING):
        assert time.monotonic() < deadline and worker.poll() is None, "the sweep never asked for its second trial"
        time.sleep(0.2)
    time.sleep(1)  # inside the hook
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    time.sleep(3)  # past grace_period since its one beat

    result = run_cli(args, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[2].system_attrs["retry_history"] == [1]


def test_three_workers_share_one_postgres_study_and_finish_exactly_n_trials(
    small_data, postgres_url, tmp_path: Path
) -> None:
    args = [
        "--multirun",
        *small_data,
        "trainer.epochs=1",
        "hydra.sweeper.n_trials=9",
        f"hydra.sweeper.storage={postgres_url}",
        "hydra.sweeper.study_name=shared",
    ]
    homes = [tmp_path / f"machine{i}" for i in range(3)]
    workers = []
    for i, home in enumerate(homes):
        home.mkdir()
        slots = ["hydra/launcher=joblib", "hydra.sweeper.n_jobs=2"] if i == 0 else []  # one with 2 async slots
        workers.append(start_cli([*args, *slots], home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], outputs

    trials = StudyRef(postgres_url, "shared").load().trials
    assert sorted(t.number for t in trials) == list(range(9))
    assert all(t.state in FINISHED for t in trials) and len(trials) == 9
    ran_by = [sum(1 for _ in (home / "outputs" / "sweeps").glob("*/[0-9]*/metrics.json")) for home in homes]
    assert sum(ran_by) == 9 and sum(1 for n in ran_by if n > 0) >= 2  # shared out, none run twice
    finals = [f for home in homes for f in (home / "outputs" / "sweeps").glob("*/final/metrics.json")]
    assert len(finals) == 1  # the test set is scored once for the study


def test_timeout_stops_asking_after_a_batch_then_the_final_step_runs_and_the_command_continues(
    small_data, tmp_path: Path, run_main
) -> None:
    # A budget spent by the time the first batch is back: each command runs one batch (2 trials) and stops there.
    args = ["trainer.epochs=1", "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2", "hydra.sweeper.timeout=0.1s"]
    first = sweep(run_main, small_data, *args)
    assert "Time budget hydra.sweeper.timeout=0.1s spent" in first.stdout + first.stderr
    assert [t.state for t in study_of(tmp_path).trials] == [TrialState.COMPLETE] * 2
    assert (sweep_dirs(tmp_path)[-1] / "final" / "metrics.json").exists()  # the final step followed

    second = sweep(run_main, small_data, *args)
    assert "2 of 6 trials already finished" in second.stdout + second.stderr
    assert [t.number for t in study_of(tmp_path).trials] == [0, 1, 2, 3]
    assert len(sweep_dirs(tmp_path)) == 2 and (sweep_dirs(tmp_path)[-1] / "final" / "metrics.json").exists()


def test_a_trial_another_worker_judged_stale_stops_and_its_retry_continues_where_it_stopped(
    small_data, tmp_path: Path
) -> None:
    # Another worker of the study (here this test, with a shorter grace period than the sweep's heartbeat allows
    # for) fails both trials in flight as stale and enqueues their retries while their jobs train. Each job stops at
    # its next report (orphaned) and leaves its checkpoint; the sweeper drops what it returned (no error: the trial
    # is already told) and runs the retries, which continue from those checkpoints; the sweep finishes.
    args = [*small_data, "trainer.epochs=100", "trainer.batch_size=16", "sweep.pruner=none", "final.epochs=1"]
    args += ["hydra/launcher=joblib", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=2"]
    args += ["hydra.sweeper.heartbeat_interval=60", "hydra.sweeper.study_name=judged"]
    sweep = start_cli(["--multirun", *args], tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while not list((tmp_path / "outputs").glob("sweeps/*/study.yaml")):
        assert time.monotonic() < deadline and sweep.poll() is None, "the sweep did not start"
        time.sleep(0.2)
    ref = StudyRef.from_sweep_dir(sweep_dirs(tmp_path)[0])
    other_worker = optuna.load_study(study_name=ref.study_name, storage=ref.open_storage(1, grace_period=1))
    while not (len(trials := other_worker.trials) == 2 and all(t.intermediate_values for t in trials)):
        assert time.monotonic() < deadline and sweep.poll() is None, "the trials never trained an epoch"
        time.sleep(0.2)
    while [t.state for t in other_worker.trials[:2]] != [TrialState.FAIL] * 2:
        assert time.monotonic() < deadline and sweep.poll() is None, "the trials were never judged stale"
        optuna.storages.fail_stale_trials(other_worker)  # a trial beats when it starts, then every 60 s
        time.sleep(0.5)
    out, err = sweep.communicate(timeout=240)
    assert sweep.returncode == 0 and "Traceback" not in err, err[-3000:]

    trials = ref.load().trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2 + [TrialState.COMPLETE] * 2
    for retry in trials[2:]:
        (number,) = retry.system_attrs["retry_history"]
        assert f"Trial {number} was ended by another worker of the study while its job ran (FAIL: judged stale" in (
            out + err
        )
        stopped = json.loads((sweep_dirs(tmp_path)[0] / str(number) / "metrics.json").read_text())
        assert stopped["status"] == "orphaned" and 0 < stopped["epochs"] < 100  # stopped at its next report
        assert "Traceback" not in (sweep_dirs(tmp_path)[0] / str(number) / "svhn_sweep.log").read_text()
        resumed = json.loads((sweep_dirs(tmp_path)[0] / str(retry.number) / "metrics.json").read_text())
        assert resumed["resumed_epochs"] == stopped["epochs"] - 1 >= 1 and resumed["epochs"] == 100
    assert list(sweep_dirs(tmp_path)[0].glob("final/metrics.json"))
