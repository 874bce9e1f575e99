"""No interruption loses a finished trial or the final result: Ctrl-C, SIGTERM and kill -9 during the final step,
SIGTERM during trials (basic, joblib and submitit_local launchers), and ``svhn-sweep-final`` on a finished sweep
(issue 10).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from svhn_sweep import final, report
from svhn_sweep.sweep.interrupts import Interrupted, exit_status, terminating_signals_interrupt
from svhn_sweep.sweep.lease import LEASE_ATTR, RESULT_ATTR
from svhn_sweep.sweep.study import StudyRef
from tests.conftest import cli_env, run_cli, start_cli

# One trial, then a final step that lasts a few seconds: long enough to be interrupted while it runs.
ONE_TRIAL_LONG_FINAL = [
    "hydra.sweeper.n_trials=1",
    "trainer.epochs=20",
    "model.hidden_sizes=[512]",
    "sweep.pruner=none",
    "hydra.sweeper.heartbeat_interval=1",
    "hydra.sweeper.grace_period=3",
]


def wait_for(condition, process: subprocess.Popen[str], what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the command ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def the_study(cwd: Path, process: subprocess.Popen[str]) -> optuna.Study:
    wait_for(lambda: list(cwd.glob("outputs/sweeps/*/study.yaml")), process, "the study")
    return StudyRef.from_sweep_dir(next(cwd.glob("outputs/sweeps/*/study.yaml")).parent).load()


def recorded_path(in_sweep: Path, recorded: str) -> Path:
    """A folder the study recorded (relative to its SQLite file's folder), as every reader finds it."""
    sweep_dir = next(folder for folder in (in_sweep, *in_sweep.parents) if (folder / "study.yaml").exists())
    return StudyRef.from_sweep_dir(sweep_dir).run_dir(recorded).resolve()


def finals(cwd: Path) -> list[Path]:
    return sorted(cwd.glob("outputs/sweeps/*/final*/metrics.json"))


def no_process_left(group: int, timeout: float = 20) -> bool:
    """True once no process of the group (the command and every worker it started) is alive."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_the_final_step_gives_it_back_and_the_same_command_does_it_once(
    small_data, tmp_path: Path, signum: int, status: int
) -> None:
    args = ["--multirun", *small_data, *ONE_TRIAL_LONG_FINAL, f"hydra.sweeper.study_name=final-{signum}"]
    sweep = start_cli(args, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    study = the_study(tmp_path, sweep)
    wait_for(lambda: study.user_attrs.get(LEASE_ATTR), sweep, "the final step")
    sweep.send_signal(signum)
    _, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == status and "Traceback" not in stderr, stderr[-3000:]
    assert "run the same command" in stderr
    assert study.user_attrs.get(LEASE_ATTR) is None and RESULT_ATTR not in study.user_attrs  # given back, no result
    assert finals(tmp_path) == []

    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]  # no new trial: the study had n_trials
    (final,) = finals(tmp_path)
    assert recorded_path(final.parent, study.user_attrs[RESULT_ATTR]["final_dir"]) == final.parent.resolve()
    assert f"test accuracy {study.user_attrs[RESULT_ATTR]['test_accuracy']:.4f}" in again.stdout


@pytest.mark.slow
def test_kill_9_during_the_final_step_then_the_same_command_takes_it_over_and_svhn_sweep_final_redoes_it(
    small_data, tmp_path: Path, capsys
) -> None:
    args = ["--multirun", *small_data, *ONE_TRIAL_LONG_FINAL, "hydra.sweeper.study_name=final-killed"]
    sweep = start_cli(args, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    study = the_study(tmp_path, sweep)
    wait_for(lambda: study.user_attrs.get(LEASE_ATTR), sweep, "the final step")
    os.killpg(sweep.pid, signal.SIGKILL)
    sweep.wait()
    dead_lease = study.user_attrs[LEASE_ATTR]
    assert RESULT_ATTR not in study.user_attrs and finals(tmp_path) == []

    again = run_cli(args, cwd=tmp_path)  # waits out the dead holder's grace period, then takes over
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"Taking over the final step from {dead_lease['holder']}" in again.stdout
    (final,) = finals(tmp_path)
    result = study.user_attrs[RESULT_ATTR]
    assert recorded_path(final.parent, result["final_dir"]) == final.parent.resolve()
    assert result["n_trials"] == 1 and result["trial"] == 0
    assert recorded_path(final.parent, result["model"]).exists() and study.user_attrs[LEASE_ATTR] is None
    report.main([str(Path(dead_lease["holder"]).parent)])  # the killed sweep's folder has no final: the study's
    assert f"test accuracy {result['test_accuracy']:.4f}, in {final.parent}" in capsys.readouterr().out

    # svhn-sweep-final redoes it on purpose, with an override, into a new folder beside the first.
    sweep_dir, before = final.parent.parent, final.read_bytes()
    redo = subprocess.run(
        [sys.executable, "-m", "svhn_sweep.final", str(sweep_dir), "trainer.epochs=1"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert redo.returncode == 0, redo.stderr[-3000:]
    assert final.read_bytes() == before  # never over the first
    redone = study.user_attrs[RESULT_ATTR]
    assert recorded_path(sweep_dir, redone["final_dir"]) == (sweep_dir / "final-2").resolve() and redone["epochs"] == 1
    assert f"test accuracy {redone['test_accuracy']:.4f}" in redo.stdout and "final-2" in redo.stdout


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib", "submitit_local"])
def test_sigterm_during_trials_marks_them_interrupted_and_leaves_no_process(
    small_data, tmp_path: Path, launcher: str
) -> None:
    """Basic: the batch loop; joblib and submitit_local: asynchronous slots, whose workers the sweeper ends."""
    parallel = [f"hydra/launcher={launcher}", "hydra.sweeper.n_jobs=2"] if launcher != "basic" else []
    args = [
        "--multirun",
        *small_data,
        *parallel,
        "trainer.epochs=30",
        "hydra.sweeper.n_trials=4",
        "sweep.pruner=none",
        "hydra.sweeper.study_name=terminated",
    ]
    sweep = start_cli(args, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    study = the_study(tmp_path, sweep)
    wait_for(lambda: any(t.intermediate_values for t in study.trials), sweep, "a trial's first epoch")
    sweep.send_signal(signal.SIGTERM)  # to the command alone, as a scheduler does; its workers are its business
    stdout, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 143 and "Traceback" not in stderr, stderr[-3000:]
    assert no_process_left(sweep.pid), subprocess.run(["ps", "-o", "pid,args", "-g", str(sweep.pid)], text=True)
    trials = study.trials
    assert trials and not [t.number for t in trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in trials if t.state == TrialState.FAIL]
    assert interrupted and all(t.user_attrs["fail_reason"] == "interrupted: SIGTERM" for t in interrupted)
    assert "FAIL" in stdout and "run the same command to resume" in stderr  # the table of what finished, the way on


def test_svhn_sweep_final_names_a_folder_that_is_not_a_sweep(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        final.main([str(tmp_path)])
    assert "study.yaml not found" in str(exit_info.value.code) and str(tmp_path) in str(exit_info.value.code)


def test_a_signal_ignored_at_start_stays_ignored_and_the_others_interrupt() -> None:
    """``nohup`` starts a command with SIGHUP ignored: the sweep must outlive the terminal, not stop with it."""
    before, term = signal.signal(signal.SIGHUP, signal.SIG_IGN), signal.getsignal(signal.SIGTERM)
    try:
        with terminating_signals_interrupt():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            with pytest.raises(Interrupted) as raised:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)  # the handler runs at the next bytecode; this only bounds the wait
            assert exit_status(raised.value) == 143
        assert signal.getsignal(signal.SIGTERM) is term  # given back after the block
    finally:
        signal.signal(signal.SIGHUP, before)
