"""What a search is made of and how its trials are read: pruning's last epoch, the row order of the tables, the
conditional layer space, two objectives and the final step's choice.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from svhn_sweep.core.errors import ConfigError
from svhn_sweep.core.train import EpochStats
from svhn_sweep.review.results import open_study, pareto_table, trials_table
from svhn_sweep.sweep.config import CONFIG_DIR, build, validate
from svhn_sweep.sweep.pruning import trial_reporter
from svhn_sweep.sweep.retrain import selected_trial
from svhn_sweep.sweep.space import MAX_LAYERS, MAX_WIDTH, MIN_WIDTH, mlp_layers
from tests.conftest import run_folder

LR = {"optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True)}


def epoch(number: int, val_acc: float) -> EpochStats:
    return EpochStats(number, 1.0, 0.5, val_acc, 0.01, 1.0)


def test_the_pruner_is_never_asked_after_the_last_epoch(tmp_path: Path) -> None:
    """A pruner that prunes everything (a threshold no accuracy reaches) stops a trial before its last epoch, and
    never at it: a trial that trained all its epochs is COMPLETE.
    """
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    pruner = {"_target_": "optuna.pruners.ThresholdPruner", "lower": 1.1}
    study.ask(LR), study.ask(LR)
    sweep = {"pruner": pruner, "study": "s", "storage": storage}
    early = trial_reporter(OmegaConf.create({**sweep, "trial": 0}), epochs=3)
    with pytest.raises(optuna.TrialPruned, match="at epoch 2"):
        early(epoch(2, 0.5))
    last = trial_reporter(OmegaConf.create({**sweep, "trial": 1}), epochs=3)
    last(epoch(3, 0.5))  # reported, not judged
    assert study.trials[1].intermediate_values == {3: 0.5}


def test_complete_trials_come_first_then_pruned_then_the_rest_best_first(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}", direction="maximize")
    for state, value in [
        (TrialState.COMPLETE, 0.5),
        (TrialState.PRUNED, 0.9),  # stopped early: its accuracy is not a finished trial's
        (TrialState.FAIL, None),
        (TrialState.COMPLETE, 0.7),
        (TrialState.PRUNED, 0.95),
    ]:
        study.add_trial(
            create_trial(
                state=state, value=value, params={"optimizer.lr": 0.01}, distributions=LR, intermediate_values={1: 0.1}
            )
        )
    table = trials_table(study)
    assert table["trial"].tolist() == [3, 0, 4, 1, 2]
    assert table["state"].tolist() == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED", "FAIL"]


def test_the_layer_space_samples_a_width_for_each_layer_and_no_other() -> None:
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5), direction="maximize")
    depths = set()
    for _ in range(30):
        trial = study.ask()
        sizes = mlp_layers(OmegaConf.create(), trial)["model.hidden_sizes"]
        depth = trial.params["layers"]
        depths.add(depth)
        assert sizes == [trial.params[f"width_{i}"] for i in range(1, depth + 1)]
        assert all(MIN_WIDTH <= size <= MAX_WIDTH for size in sizes)
        assert set(trial.params) - {"layers", "width_1", "width_2", "width_3"} == set()
        assert not any(f"width_{i}" in trial.params for i in range(depth + 1, MAX_LAYERS + 1))
        study.tell(trial, sum(sizes) / 6000)
    assert depths == {1, 2, 3}


@pytest.mark.slow
def test_a_sweep_of_the_layer_space_trains_the_composed_layers_and_retrains_the_best(
    small_data, tmp_path: Path, run_main
) -> None:
    args = ["--multirun", *small_data, "trainer.epochs=1", "hydra.sweeper.n_trials=4", "search=mlp_layers"]
    result = run_main(args)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "outputs" / "sweeps").iterdir()
    study = open_study(sweep_dir)
    table = trials_table(study).set_index("trial")
    for trial in study.trials:
        config = OmegaConf.load(run_folder(study, trial) / ".hydra" / "config.yaml")
        widths = [trial.params[f"width_{i}"] for i in range(1, trial.params["layers"] + 1)]
        assert list(config.model.hidden_sizes) == widths == trial.user_attrs["composed"]["model.hidden_sizes"]
        assert table.loc[trial.number, "hidden_sizes"] == "[" + ",".join(map(str, widths)) + "]"
    assert study.trials[0].user_attrs["enqueued"] and study.trials[0].params["width_1"] == 100  # the notebook's
    best = OmegaConf.load(sweep_dir / "final" / "config.yaml")
    assert list(best.model.hidden_sizes) == study.best_trial.user_attrs["composed"]["model.hidden_sizes"]
    assert "hidden_sizes" in result.stdout and "layers" in result.stdout

    result = run_main([*args[:-1], "search=mlp"])  # another space: another study, in the same storage
    assert result.returncode == 0, result.stderr[-3000:]
    names = optuna.get_all_study_names(f"sqlite:///{tmp_path / 'outputs' / 'optuna.db'}")
    assert len(names) == 2


def two_objective_study(tmp_path: Path, points: list[tuple[float, int]]) -> optuna.Study:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'two.db'}", directions=["maximize", "minimize"])
    for accuracy, n_params in points:
        study.add_trial(create_trial(values=[accuracy, n_params], params={"optimizer.lr": 0.01}, distributions=LR))
    return study


def test_final_select_picks_the_best_or_the_smallest_within_the_margin(tmp_path: Path) -> None:
    study = two_objective_study(tmp_path, [(0.80, 900_000), (0.795, 300_000), (0.78, 100_000), (0.81, 2_000_000)])
    assert selected_trial(study, "best").number == 3
    assert selected_trial(study, "smallest_within:0.01").number == 0  # 0.80 >= 0.81 - 0.01; 0.795 is not
    assert selected_trial(study, "smallest_within:0.02").number == 1
    assert selected_trial(study, "smallest_within:0.5").number == 2
    front = pareto_table(trials_table(study), study)
    assert front["trial"].tolist() == [2, 1, 0, 3] and front["n_params"].is_monotonic_increasing


@pytest.mark.slow
def test_a_two_objective_sweep_stores_size_prints_the_front_and_retrains_the_chosen_trial(
    small_data, tmp_path: Path, run_main
) -> None:
    margin = 0.05
    result = run_main(
        [
            "--multirun",
            *small_data,
            "trainer.epochs=1",
            "hydra.sweeper.n_trials=5",
            "search=mlp_layers",
            "sweep.objectives=[val_accuracy,n_params]",
            "hydra.sweeper.direction=[maximize,minimize]",
            f"final.select=smallest_within:{margin}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "outputs" / "sweeps").iterdir()
    study = open_study(sweep_dir)
    for trial in study.trials:
        run_dir = run_folder(study, trial)
        model = build(OmegaConf.load(run_dir / ".hydra" / "config.yaml").model)
        n_params = sum(p.numel() for p in model.parameters())
        assert trial.values == [json.loads((run_dir / "metrics.json").read_text())["val_accuracy"], n_params]

    front_text = result.stdout.split("Pareto front (")[1].split("\n\n")[0]
    printed = [int(line.split()[0]) for line in front_text.splitlines()[2:]]
    assert sorted(printed) == sorted(t.number for t in study.best_trials)
    top = max(t.values[0] for t in study.trials)
    chosen = min((t for t in study.trials if t.values[0] >= top - margin), key=lambda t: (t.values[1], -t.values[0]))
    final = json.loads((sweep_dir / "final" / "metrics.json").read_text())
    assert final["trial"] == chosen.number and final["select"] == f"smallest_within:{margin}"
    assert f"Config chosen by smallest_within:{margin} (trial {chosen.number}," in result.stdout
    assert (sweep_dir / "plots" / "pareto_front.png").read_bytes()[:4] == b"\x89PNG"


def test_the_pruning_benchmark_replays_a_pruner_as_a_sweep_asks_it() -> None:
    """benchmarks/pruning.py --replay: each recorded curve stops where the pruner says, never after its last epoch."""
    from benchmarks.pruning import build_pruner, replay

    curves = [[0.5, 0.6, 0.7], [0.1, 0.2, 0.3], [0.2, 0.3, 0.9], [0.45, 0.5, 0.35]]
    result = replay(curves, optuna.pruners.ThresholdPruner(lower=0.4))
    # trials 1 and 2 stop at epoch 1 (below 0.4); trial 3 falls below only at its last epoch, which is not judged
    assert result == {"trials": 4, "complete": 2, "pruned": 2, "epochs": 3 + 1 + 1 + 3, "best_val_acc": 0.7}
    median = build_pruner("median:n_startup_trials=5", epochs=3)
    assert isinstance(median, optuna.pruners.MedianPruner) and median._n_startup_trials == 5
    assert replay(curves, median)["epochs"] == 12  # fewer finished trials than start-up trials: nothing pruned


# -- the pruners, as train.yaml and the error message list them ------------------------------------------------
PRUNER_OPTIONS = sorted(path.stem for path in Path(CONFIG_DIR, "sweep", "pruner").glob("*.yaml"))


def test_train_yaml_and_the_pruner_error_list_every_pruner_option(compose_cfg) -> None:
    (comment,) = [line for line in Path(CONFIG_DIR, "train.yaml").read_text().splitlines() if "sweep/pruner:" in line]
    assert sorted(name.strip() for name in comment.split("#")[1].split("|")) == PRUNER_OPTIONS
    with pytest.raises(ConfigError) as error:
        validate(compose_cfg("sweep.pruner=5"))
    listed = re.search(r"sweep/pruner=([\w|]+)", str(error.value)).group(1).split("|")
    assert sorted([*listed, "none"]) == PRUNER_OPTIONS


@pytest.mark.parametrize("option", ["median", "percentile"])
def test_median_and_percentile_judge_a_trial_from_its_first_epoch(compose_cfg, option: str) -> None:
    """As their YAML files say: once the start-up trials finished, a trial behind at epoch 1 is pruned at epoch 1."""
    pruner = build(compose_cfg(f"sweep/pruner={option}").sweep.pruner)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for _ in range(pruner._n_startup_trials):
        study.add_trial(create_trial(value=0.9, intermediate_values={1: 0.9, 2: 0.9}))
    behind = study.ask()
    behind.report(0.1, step=1)
    assert behind.should_prune()
