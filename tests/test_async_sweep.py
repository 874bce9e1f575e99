"""Asynchronous slots through the real command (issue 19): a free slot takes the next trial while the other still
runs, with the joblib launcher (reused workers, data read once) and submitit's local executor; the same seeded
search one at a time in slots or in batches; the time budget. Interrupts: ``test_interrupts.py``; several commands
sharing a study: ``test_scaling.py``.

One long trial (enqueued first, 40 epochs) beside short ones (1 and 2 epochs; Optuna enqueues a parameter set
once): with a batch barrier the third trial would wait for the long one; asynchronously it is asked for, run and
told while the long one still trains.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from svhn_sweep.sweep.study import StudyRef
from tests.conftest import run_cli

pytestmark = pytest.mark.slow  # each test runs the real command in a subprocess

# Only the number of epochs is searched; the first trial is long, the others short.
LONG_THEN_SHORT = [
    "~search",
    "trainer.epochs=choice(1,2,40)",
    "model.hidden_sizes=[1024]",
    "sweep.pruner=none",
    "trainer.num_threads=1",
]


def enqueue(*epochs: int) -> str:
    return "hydra.sweeper.enqueue=[" + ",".join(f"{{trainer.epochs:{e}}}" for e in epochs) + "]"


def finished_sweep(cwd: Path, args: list[str]) -> tuple[Path, optuna.Study, str]:
    result = run_cli(["--multirun", *args], cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = (cwd / "outputs" / "sweeps").iterdir()
    return sweep_dir, StudyRef.from_sweep_dir(sweep_dir).load(), result.stdout + result.stderr


def metrics(sweep_dir: Path, number: int) -> dict:
    return json.loads((sweep_dir / str(number) / "metrics.json").read_text())


def test_joblib_slots_refill_while_a_long_trial_runs_in_reused_workers(small_data, tmp_path: Path) -> None:
    args = [*small_data, *LONG_THEN_SHORT, enqueue(40, 1, 2), "hydra.sweeper.n_trials=3", "final.epochs=1"]
    args += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"]
    sweep_dir, study, log = finished_sweep(tmp_path, args)

    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3  # exactly n_trials
    # trial 2 was asked for (slot 1 free) and finished while trial 0 trained: no barrier
    assert trials[1].datetime_complete <= trials[2].datetime_start < trials[0].datetime_complete
    assert trials[2].datetime_complete < trials[0].datetime_complete
    runs = {t.number: metrics(sweep_dir, t.number) for t in trials}
    assert [runs[n]["epochs"] for n in range(3)] == [40, 1, 2]
    assert [runs[n]["process"]["slot"] for n in range(3)] == [0, 1, 1]  # the freed slot, refilled
    # one worker ran both short trials and read the data once; the other ran the long one
    assert runs[1]["process"]["pid"] == runs[2]["process"]["pid"] != runs[0]["process"]["pid"]
    assert {runs[n]["process"]["data_disk_reads"] for n in range(3)} == {1}
    for trial in trials:  # Hydra's job as before: its folder, composed config, overrides
        job = yaml.safe_load((sweep_dir / str(trial.number) / ".hydra" / "config.yaml").read_text())
        assert job["sweep"]["trial"] == trial.number and job["trainer"]["epochs"] == runs[trial.number]["epochs"]
    assert "in flight" in log and log.count("Trial 0 COMPLETE") == 1
    assert [p.name for p in sweep_dir.glob("final*")] == ["final"]  # the final step, once


def test_submitit_local_slots_refill_while_a_long_trial_runs(small_data, tmp_path: Path) -> None:
    args = [*small_data, *LONG_THEN_SHORT, enqueue(40, 1, 2), "hydra.sweeper.n_trials=3", "final.enabled=false"]
    args += ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", "hydra.sweeper.n_jobs=2"]
    # A sweep folder named to the microsecond, as Hydra suggests for unique folders: ${now:} resolved once, so that
    # submitit's folder (${hydra.sweep.dir}/.submitit) is in the sweep's folder, not in one of its own.
    args += ["hydra.sweep.dir=outputs/sweeps/${now:%Y-%m-%d_%H-%M-%S-%f}"]
    sweep_dir, study, _ = finished_sweep(tmp_path, args)

    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert trials[2].datetime_start < trials[0].datetime_complete  # asked for as soon as trial 1 was told
    assert [metrics(sweep_dir, n)["process"]["slot"] for n in range(3)] == [0, 1, 1]
    assert all((sweep_dir / str(n) / ".hydra" / "config.yaml").exists() for n in range(3))
    assert (sweep_dir / ".submitit").is_dir()  # and the sweep folder is the only one (finished_sweep)


def test_one_slot_proposes_and_scores_what_one_batch_at_a_time_does(small_data, tmp_path: Path) -> None:
    """Seeded, one trial in flight: the asynchronous loop asks and tells in the batch loop's order."""
    args = [*small_data, "trainer.epochs=1", "hydra.sweeper.n_trials=3", "final.enabled=false"]
    args += ["trainer.num_threads=1", "hydra/launcher=joblib", "hydra.sweeper.n_jobs=1"]
    runs = []
    for mode in ("false", "true"):
        cwd = tmp_path / f"batch-{mode}"
        cwd.mkdir()
        _, study, _ = finished_sweep(cwd, [*args, f"hydra.sweeper.batch={mode}"])
        runs.append([(t.params, t.value, t.state) for t in study.trials])
    assert runs[0] == runs[1] and len(runs[0]) == 3


def test_the_time_budget_stops_the_slots_from_asking_and_lets_the_trials_in_flight_finish(
    small_data, tmp_path: Path
) -> None:
    args = [*small_data, "trainer.epochs=1", "hydra.sweeper.n_trials=6", "hydra.sweeper.timeout=0.1s"]
    args += ["hydra/launcher=joblib", "hydra.sweeper.n_jobs=2", "final.enabled=false"]
    _, study, log = finished_sweep(tmp_path, args)
    assert "Time budget hydra.sweeper.timeout=0.1s spent" in log
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2  # the first fill of both slots, no more
