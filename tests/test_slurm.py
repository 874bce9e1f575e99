"""Sweeps through ``hydra/launcher=slurm`` on a real one-node SLURM cluster with accounting (tests/slurm.py): the
happy path, a job preempted and requeued, a job cancelled mid-trial; and on one without accounting, a job that
stops beating (issue 18).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest
from optuna.storages import RetryFailedTrialCallback
from optuna.trial import FrozenTrial, TrialState

from svhn_sweep.constants import CHECKPOINT_FILE, METRICS_FILE, STUDY_FILE
from svhn_sweep.sweep.liveness import queued, submitted_job
from svhn_sweep.sweep.study import StudyRef
from tests.conftest import run_cli, start_cli
from tests.slurm import PARTITION, Cluster

pytestmark = pytest.mark.slow  # real sweeps whose trials are SLURM jobs

LAUNCHER = [
    "hydra/launcher=slurm",
    f"hydra.launcher.partition={PARTITION}",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
]
T = TypeVar("T")


def wait_for(what: str, found: Callable[[], T | None], sweep: subprocess.Popen[str], timeout: float = 180) -> T:
    """Poll until ``found`` returns something; fail with the sweep's output if it ends or time runs out first."""
    deadline = time.monotonic() + timeout
    while (value := found()) is None:
        if sweep.poll() is not None or time.monotonic() > deadline:
            sweep.kill()
            out, err = sweep.communicate()
            pytest.fail(f"never saw {what} (exit status {sweep.returncode}):\n{out[-2000:]}\n{err[-3000:]}")
        time.sleep(0.2)
    return value


# Two trials in flight, each with enough epochs, of small batches through a wide layer, that its job is still
# running when a test stops it: past its first checkpoint, and in the second between SIGTERM (which submitit
# ignores) and SIGKILL (KILL_WAIT_S).
LONG_PAIR = ["hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "trainer.epochs=200", "trainer.batch_size=16"]
LONG_PAIR += ["model.hidden_sizes=[256]", "sweep.pruner=none", "final.epochs=1"]


def finished_with_a_retry(
    sweep: subprocess.Popen[str], sweep_dir: Path, number: int, reason: str
) -> tuple[str, FrozenTrial, FrozenTrial]:
    """The sweep's end after trial ``number``'s job was lost: exit 0 and no traceback; that trial FAIL with a
    reason matching ``reason`` (a regular expression), not counted: two COMPLETE trials, one of them its retry
    with its parameters; the final step done. Returns the sweep's output, the lost trial and its retry.
    """
    out, err = sweep.communicate(timeout=400)
    assert sweep.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    study = StudyRef.from_sweep_dir(sweep_dir).load()
    lost = study.trials[number]
    assert lost.state == TrialState.FAIL
    assert re.fullmatch(reason, lost.user_attrs["fail_reason"]), lost.user_attrs["fail_reason"]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2  # the interrupted trial does not count toward n_trials
    (retry,) = [t for t in complete if RetryFailedTrialCallback.retried_trial_number(t) == number]
    assert retry.params == lost.params
    assert (sweep_dir / "final" / "metrics.json").exists()
    return out + err, lost, retry


def sweep_dir_of(cwd: Path) -> Path | None:
    found = list((cwd / "outputs" / "sweeps").glob(f"*/{STUDY_FILE}")) if (cwd / "outputs").exists() else []
    return found[0].parent if found else None


def job_of_trial(sweep_dir: Path, number: int) -> str | None:
    """The SLURM job id of a trial, read from the job's submission that submitit saved."""
    return submitted_job(sweep_dir / ".submitit", number)


def running_job_of_trial(sweep_dir: Path, number: int) -> str | None:
    """The trial's job once it has checkpointed its first epoch."""
    job = job_of_trial(sweep_dir, number)
    return job if job is not None and (sweep_dir / str(number) / CHECKPOINT_FILE).exists() else None


def job_states(slurm: Cluster, job: str) -> list[str]:
    """Every state accounting recorded for the job, a requeued run's included (``--duplicates``)."""
    return slurm.run("sacct", "-X", "-n", "-P", "--duplicates", "-o", "State", "-j", job).split()


def started(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return start_cli(["--multirun", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_sweep_runs_its_trials_as_slurm_jobs_and_then_the_final_step(
    small_data, slurm: Cluster, tmp_path: Path
) -> None:
    args = ["hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "trainer.epochs=1", "final.epochs=1"]
    result = run_cli(["--multirun", *small_data, *LAUNCHER, *args, "sweep.pruner=none"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dir = sweep_dir_of(tmp_path)
    assert sweep_dir is not None
    study = StudyRef.from_sweep_dir(sweep_dir).load()
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    jobs = [job_of_trial(sweep_dir, n) for n in range(2)]
    assert None not in jobs and len(set(jobs)) == 2
    assert [job_states(slurm, job) for job in jobs] == [["COMPLETED"]] * 2  # SLURM ran them, accounting saw it
    for trial in study.trials:  # each job wrote its trial's run folder
        assert (sweep_dir / str(trial.number) / "metrics.json").exists()
    assert (sweep_dir / "final" / "metrics.json").exists()


def test_a_preempted_job_is_requeued_and_continues_the_same_trial(small_data, slurm: Cluster, tmp_path: Path) -> None:
    epochs = 24
    args = [*small_data, *LAUNCHER, "hydra.sweeper.n_trials=1", f"trainer.epochs={epochs}", "sweep.pruner=none"]
    sweep = started([*args, "final.enabled=false"], tmp_path)
    sweep_dir = wait_for("the sweep folder", lambda: sweep_dir_of(tmp_path), sweep)
    job = wait_for("trial 0's job checkpoint an epoch", lambda: running_job_of_trial(sweep_dir, 0), sweep)
    slurm.run("scancel", "--signal=USR2", job)  # what SLURM sends signal_delay_s before the time limit
    out, err = sweep.communicate(timeout=300)

    assert sweep.returncode == 0, err[-3000:]
    study = StudyRef.from_sweep_dir(sweep_dir).load()
    assert [(t.number, t.state) for t in study.trials] == [(0, TrialState.COMPLETE)]  # the same trial, finished
    assert sorted(p.name for p in sweep_dir.iterdir() if p.name.isdigit()) == ["0"]  # in the same folder
    assert job_states(slurm, job) == ["REQUEUED", "COMPLETED"]
    log = "".join(path.read_text() for path in (sweep_dir / ".submitit" / job).glob(f"{job}_0_log.*"))
    assert "this job is preempted" in log and f"Requeued job {job}" in log
    assert sorted(study.trials[0].intermediate_values) == list(range(1, epochs + 1))  # every epoch reported once
    metrics = json.loads((sweep_dir / "0" / METRICS_FILE).read_text())  # the requeued job resumed from its checkpoint:
    assert metrics["epochs"] == epochs and 1 <= metrics["resumed_epochs"] < epochs  # it trained the rest only


def test_a_job_cancelled_mid_trial_costs_that_trial_only_and_the_sweep_goes_on(
    small_data, slurm: Cluster, tmp_path: Path
) -> None:
    sweep = started([*small_data, *LAUNCHER, *LONG_PAIR], tmp_path)
    sweep_dir = wait_for("the sweep folder", lambda: sweep_dir_of(tmp_path), sweep)
    job = wait_for("trial 0's job checkpoint an epoch", lambda: running_job_of_trial(sweep_dir, 0), sweep)
    slurm.run("scancel", job)  # what a preemption without requeue, or an administrator, does

    _, _, retry = finished_with_a_retry(sweep, sweep_dir, 0, re.escape("interrupted: lost job (CANCELLED)"))
    resumed = json.loads((sweep_dir / str(retry.number) / METRICS_FILE).read_text())["resumed_epochs"]
    assert resumed >= 1  # from the cancelled attempt's checkpoint (sweep.resume_from)
    assert "CANCELLED" in job_states(slurm, job)[0]


def test_after_ctrl_c_the_jobs_stop_at_their_next_epoch_and_the_same_command_continues_from_their_checkpoints(
    small_data, slurm: Cluster, tmp_path: Path
) -> None:
    # The sweeper cannot stop SLURM jobs from its Ctrl-C handler (submitit leaves them running), but it marks their
    # trials interrupted: each job then stops at its next report, orphaned, and keeps its checkpoint for the retry.
    args = [*small_data, *LAUNCHER, *LONG_PAIR]
    sweep = started(args, tmp_path)
    sweep_dir = wait_for("the sweep folder", lambda: sweep_dir_of(tmp_path), sweep)
    jobs = [wait_for(f"trial {n}'s job checkpoint", partial(running_job_of_trial, sweep_dir, n), sweep) for n in (0, 1)]
    sweep.send_signal(signal.SIGINT)
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, err[-3000:]
    deadline = time.monotonic() + 120
    while any(queued(job) is not False for job in jobs):
        assert time.monotonic() < deadline, f"a job of the stopped sweep is still in the queue: {jobs}"
        time.sleep(0.5)
    for number in (0, 1):
        stopped = json.loads((sweep_dir / str(number) / METRICS_FILE).read_text())
        assert stopped["status"] == "orphaned" and "(FAIL: interrupted: SIGINT)" in stopped["reason"]
        assert 0 < stopped["epochs"] < 200 and (sweep_dir / str(number) / CHECKPOINT_FILE).exists()

    again = run_cli(["--multirun", *args], cwd=tmp_path, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = StudyRef.from_sweep_dir(sweep_dir).load().trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2 + [TrialState.COMPLETE] * 2
    for retry in trials[2:]:  # each from its attempt's checkpoint: all but the epoch that found its trial ended
        (number,) = retry.system_attrs["retry_history"]
        (metrics,) = tmp_path.glob(f"outputs/sweeps/*/{retry.number}/{METRICS_FILE}")
        stopped = json.loads((sweep_dir / str(number) / METRICS_FILE).read_text())
        assert json.loads(metrics.read_text())["resumed_epochs"] == stopped["epochs"] - 1 >= 1


def test_without_accounting_a_job_that_stops_beating_is_cancelled_and_its_trial_retried(
    small_data, slurm_without_accounting: Cluster, tmp_path: Path
) -> None:
    # The job's processes are stopped (SIGSTOP), as on a node that hangs: SLURM still says RUNNING, and without
    # sacct submitit would wait for it forever. Its heartbeat file stops changing; the sweeper must cancel it.
    slurm = slurm_without_accounting
    args = [*small_data, *LAUNCHER, *LONG_PAIR]
    sweep = started([*args, "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=8"], tmp_path)
    sweep_dir = wait_for("the sweep folder", lambda: sweep_dir_of(tmp_path), sweep)
    job = wait_for("trial 0's job checkpoint an epoch", lambda: running_job_of_trial(sweep_dir, 0), sweep)
    for pid in slurm.run("scontrol", "listpids", job).split("\n")[1:]:
        if pid.split():
            os.kill(int(pid.split()[0]), signal.SIGSTOP)

    output, _, retry = finished_with_a_retry(sweep, sweep_dir, 0, r"interrupted: lost job \(no heartbeat for \d+ s\)")
    assert output.count("sacct is not available") == 1, output[-3000:]  # said once
    assert json.loads((sweep_dir / str(retry.number) / METRICS_FILE).read_text())["resumed_epochs"] >= 1
    assert job not in slurm.run("squeue", "-h", "-o", "%i")  # the stopped job was cancelled, not left to hang


def test_without_accounting_a_job_cancelled_while_pending_is_judged_lost_and_its_trial_retried(
    small_data, slurm_without_accounting: Cluster, tmp_path: Path
) -> None:
    # Each job asks for both cores, so trial 1's job waits in the queue behind trial 0's; cancelled there, it never
    # beats, and without sacct only squeue can tell that it is gone.
    slurm = slurm_without_accounting
    launcher = [*(o for o in LAUNCHER if "cpus_per_task" not in o), "hydra.launcher.cpus_per_task=2"]
    args = [*small_data, *launcher, *LONG_PAIR]
    sweep = started([*args, "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=6"], tmp_path)
    sweep_dir = wait_for("the sweep folder", lambda: sweep_dir_of(tmp_path), sweep)

    def pending_job_of_trial_1() -> str | None:
        job = job_of_trial(sweep_dir, 1)
        return job if job and slurm.run("squeue", "-h", "-j", job, "-o", "%T").strip() == "PENDING" else None

    job = wait_for("trial 1's job pending", pending_job_of_trial_1, sweep)
    slurm.run("scancel", job)
    finished_with_a_retry(sweep, sweep_dir, 1, re.escape("interrupted: lost job (it left the queue before it started)"))
    assert not (sweep_dir / "1" / METRICS_FILE).exists()  # it never ran
