"""Every sampler node hydra-optuna-sweeper registers runs a sweep or stops with one message, and a sampler's
randomness is drawn per trial: a seeded sweep is reproducible, and a resumed, extended or shared study never
proposes again what it has (issue 17, items 1 and 4).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from svhn_sweep.sweep.sampling import TrialSeededSampler, build_sampler, trial_seed
from tests.conftest import cli_env
from tests.test_failures import assert_one_clear_message, study_of

QUICK = ["trainer.epochs=1", "sweep.pruner=none", "final.enabled=false"]
# A space every sampler can take, grid included: discrete, 4 points.
DISCRETE = [
    "optimizer.lr=choice(0.01,0.05)",
    "model.hidden_sizes=choice([16],[32])",
    "optimizer.weight_decay=1e-4",
    "model.batchnorm=none",
    "optimizer=sgd",
    "scheduler=none",
    "hydra.sweeper.enqueue=[]",
]


def parameter_sets(trials: list[optuna.trial.FrozenTrial]) -> list[tuple]:
    return [tuple(sorted(t.params.items())) for t in trials]


@pytest.mark.slow
@pytest.mark.parametrize("node", ["svhn_tpe", "tpe", "random", "cmaes", "nsgaii", "nsgaiii", "gp", "qmc", "grid"])
def test_every_sampler_node_runs_a_two_trial_sweep(small_data, tmp_path: Path, run_main, node: str) -> None:
    result = run_main(
        ["--multirun", *small_data, *QUICK, *DISCRETE, f"hydra/sweeper/sampler={node}", "hydra.sweeper.n_trials=2"]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials = study_of(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2


@pytest.mark.slow
def test_a_grid_sweep_enumerates_its_grid_once_and_ends(small_data, tmp_path: Path, run_main) -> None:
    result = run_main(["--multirun", *small_data, *QUICK, *DISCRETE, "hydra/sweeper/sampler=grid"])  # n_trials 20
    assert result.returncode == 0, result.stderr[-3000:]
    trials = study_of(tmp_path).trials
    assert len(trials) == 4 and len(set(parameter_sets(trials))) == 4
    said = result.stdout + result.stderr
    assert "The grid has 4 points: n_trials 20 capped to 4." in said
    assert "The grid is done: all 4 of its points evaluated." in said


def test_a_continuous_parameter_in_a_grid_sweep_is_named(small_data, tmp_path: Path, run_main) -> None:
    result = run_main(["--multirun", *small_data, "hydra/sweeper/sampler=grid", "hydra.sweeper.enqueue=[]"])
    assert_one_clear_message(result, "hydra/sweeper/sampler=grid", "optimizer.lr is continuous", "choice(...)")
    assert not (tmp_path / "outputs").exists()


def test_motpe_points_to_tpe(small_data, tmp_path: Path, run_main) -> None:
    result = run_main(["--multirun", *small_data, "hydra/sweeper/sampler=motpe"])
    assert_one_clear_message(result, "hydra.sweeper.sampler cannot be built", "'motpe' sampler was removed", "tpe")


def test_cmaes_without_its_package_says_which_extra_to_install(small_data, tmp_path, run_main, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cmaes", None)  # as if not installed: importlib finds no such module
    result = run_main(["--multirun", *small_data, "hydra/sweeper/sampler=cmaes"])
    assert_one_clear_message(result, "sampler=cmaes needs the cmaes package", "pip install -e '.[cmaes]'")
    assert not (tmp_path / "outputs").exists()


def test_a_trials_sampler_depends_on_the_seed_and_its_number_only() -> None:
    """In memory: the same seed gives the same trials in a fresh study; a study resumed by a new sampler object
    goes on with new trials instead of replaying the first ones.
    """
    space = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)

    def run(study: optuna.Study, n: int) -> list[float]:
        values = []
        for _ in range(n):
            trial = study.ask({"lr": space})
            values.append(trial.params["lr"])
            study.tell(trial, 0.0)
        return values

    def sampler(seed: int) -> TrialSeededSampler:
        return build_sampler(optuna.samplers.RandomSampler, seed)

    once = run(optuna.create_study(sampler=sampler(42)), 6)
    assert once == run(optuna.create_study(sampler=sampler(42)), 6)
    resumed = optuna.create_study(sampler=sampler(42))
    first = run(resumed, 3)
    resumed.sampler = sampler(42)  # the next command builds its sampler again
    assert first + run(resumed, 3) == once and len(set(once)) == 6
    assert once != run(optuna.create_study(sampler=sampler(7)), 6)
    assert len({trial_seed(42, n) for n in range(1000)}) == 1000


@pytest.mark.slow
def test_extending_a_study_repeats_no_trial_and_a_seeded_sweep_is_reproducible(small_data, tmp_path, run_main):
    args = ["--multirun", *small_data, *QUICK, "hydra.sweeper.study_name=extend", "hydra.sweeper.enqueue=[]"]
    assert run_main([*args, "hydra.sweeper.n_trials=3"]).returncode == 0
    assert run_main([*args, "hydra.sweeper.n_trials=6"]).returncode == 0
    extended = study_of_name(tmp_path, "extend").trials
    assert len(extended) == 6 and len(set(parameter_sets(extended))) == 6

    again = tmp_path / "again"  # the same seeded command, once, in a folder of its own
    again.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "svhn_sweep", *args, "hydra.sweeper.n_trials=6"],
        cwd=again,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    once = optuna.load_study(study_name="extend", storage=f"sqlite:///{again / 'outputs' / 'optuna.db'}").trials
    assert parameter_sets(once) == parameter_sets(extended)  # one command or two: the same trials


def study_of_name(cwd: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd / 'outputs' / 'optuna.db'}")


@pytest.mark.slow
def test_two_workers_sharing_a_study_draw_different_trials(small_data, tmp_path: Path) -> None:
    args = [
        *["-m", "svhn_sweep", "--multirun", *small_data, *QUICK],
        *["hydra.sweeper.study_name=shared", "hydra.sweeper.enqueue=[]", "hydra.sweeper.n_trials=6"],
    ]
    workers = [
        subprocess.Popen(
            [sys.executable, *args, f"hydra.sweep.dir={tmp_path / f'worker{i}'}"],
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr[-3000:]
    trials = study_of_name(tmp_path, "shared").trials
    assert len(trials) == 6 and len(set(parameter_sets(trials))) == 6
