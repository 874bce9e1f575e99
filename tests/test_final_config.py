"""The final step retrains exactly the selected trial's config, whatever the search space holds (issue 17, item 0)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from svhn_sweep.sweep.retrain import without_group
from svhn_sweep.sweep.study import StudyRef

# What the final step changes by design: its length, its schedule (final.scheduler), where it is told it runs, and
# an absolute data root.
BY_DESIGN = ("trainer.epochs", "scheduler", "sweep.", "data.root")


def flat(node: dict, prefix: str = "") -> dict[str, object]:
    items: dict[str, object] = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            items.update(flat(value, f"{prefix}{key}."))
        else:
            items[f"{prefix}{key}"] = value
    return items


def final_and_trial_configs(cwd: Path) -> tuple[dict[str, object], dict[str, object]]:
    (sweep_dir,) = (cwd / "outputs" / "sweeps").iterdir()
    ref = StudyRef.from_sweep_dir(sweep_dir)
    final = yaml.safe_load((sweep_dir / "final" / "config.yaml").read_text())
    trial = next(
        t
        for t in ref.load().trials
        if t.number == yaml.safe_load((sweep_dir / "final" / "metrics.json").read_text())["trial"]
    )
    trial_cfg = yaml.safe_load((ref.run_dir(trial.user_attrs["run_dir"]) / ".hydra" / "config.yaml").read_text())
    keep = lambda items: {k: v for k, v in items.items() if not k.startswith(BY_DESIGN)}  # noqa: E731
    return keep(flat(final)), keep(flat(trial_cfg))


@pytest.mark.slow
@pytest.mark.parametrize(
    "space",
    [
        ["'+hydra.sweeper.params={model.dropout:0.3}'"],  # a fixed entry among the search parameters
        ["search=mlp_layers"],  # values composed by the space's hook (model.hidden_sizes from layer widths)
    ],
)
def test_the_final_retrain_is_the_selected_trials_config_key_by_key(small_data, tmp_path, run_main, space) -> None:
    args = ["--multirun", *small_data, "trainer.epochs=1", "final.epochs=2", "sweep.pruner=none", "optimizer=sgd"]
    result = run_main([*args, "hydra.sweeper.n_trials=2", *(s.strip("'") for s in space)])
    assert result.returncode == 0, result.stderr[-3000:]
    final, trial = final_and_trial_configs(tmp_path)
    assert final == trial
    schedule = flat(yaml.safe_load(next((tmp_path / "outputs" / "sweeps").glob("*/final/config.yaml")).read_text()))
    assert schedule["scheduler._target_"] == "torch.optim.lr_scheduler.CosineAnnealingLR"  # final.scheduler=cosine
    assert schedule["scheduler.T_max"] == "${trainer.epochs}" and schedule["trainer.epochs"] == 2  # its own length
    if "dropout" in space[0]:
        assert final["model.dropout"] == 0.3


def test_the_final_schedule_replaces_the_trials_choice_and_its_keys() -> None:
    trial = ["scheduler=step", "scheduler.gamma=0.3", "optimizer.lr=0.1", "+scheduler.extra=1", "model=mlp"]
    assert without_group(trial, "scheduler") == ["optimizer.lr=0.1", "model=mlp"]
