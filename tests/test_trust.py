"""Configs can be shared: a config may build only the classes the project builds; loaders are refused by name, and
only the environment (SVHN_SWEEP_TRUSTED_TARGETS) grants more, before anything runs (issue 17 item 10).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from svhn_sweep.core.errors import ConfigError
from svhn_sweep.sweep.config import check_targets, validate
from tests.conftest import cli_env, run_cli

# A group file someone shares: it would download a repository and run its code.
HUB_MODEL = "_target_: torch.hub.load\nrepo_or_dir: someone/repo\nmodel: net\ntrust_repo: true\n"


@pytest.fixture
def shared_group(tmp_path: Path) -> list[str]:
    """``model/shared.yaml`` in a folder on Hydra's search path, and the overrides that pick it."""
    (tmp_path / "shared" / "model").mkdir(parents=True)
    (tmp_path / "shared" / "model" / "shared.yaml").write_text(HUB_MODEL)
    return [f"hydra.searchpath=[file://{tmp_path / 'shared'}]", "model=shared", "search=mlp"]


@pytest.mark.parametrize("multirun", [True, False], ids=["sweep", "single run"])
def test_a_shared_group_file_with_a_code_loader_stops_before_anything_runs(
    tmp_path: Path, shared_group: list[str], multirun: bool
) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    result = run_cli([*(["--multirun"] if multirun else []), "data=synthetic", *shared_group], cwd=cwd, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if "SVHN_SWEEP_TRUSTED_TARGETS" in line]
    assert line.startswith("model._target_=torch.hub.load loads code or pickled objects")
    if multirun:  # no study, no sweep folder: nothing at all
        assert not (cwd / "outputs").exists()
    else:  # Hydra made the run's folder; nothing was trained
        assert not list(cwd.glob("outputs/runs/*/metrics.json"))


def test_only_the_classes_the_project_builds_are_trusted(compose_cfg) -> None:
    for options in (["model=cnn", "optimizer=adamw", "scheduler=cosine", "logger=mlflow"], ["data=synthetic"]):
        validate(compose_cfg(*options, "sweep/pruner=hyperband"))  # every shipped option passes
    for target, key in [
        ("torch.load", "model._target_"),
        ("torch.hub.load_state_dict_from_url", "model._target_"),
        ("torchvision.models.resnet18", "model._target_"),  # a whole package is not trusted
        ("torch.nn.Linear", "model._target_"),
        ("os.system", "optimizer._target_"),
    ]:
        with pytest.raises(ConfigError, match=rf"^{key}={target} .*SVHN_SWEEP_TRUSTED_TARGETS"):
            validate(compose_cfg(f"{key}={target}"))
    with pytest.raises(ConfigError, match=r"^layers\.1\._target_=pickle\.loads loads code"):
        check_targets({"layers": [{"_target_": "torch.optim.SGD"}, {"_target_": "pickle.loads"}]})


@pytest.mark.parametrize(
    ("trusted", "allowed"),
    [
        ("mypkg.models.*", ["mypkg.models.Net"]),  # your own classes, by package
        ("torch.*", ["torch.nn.Linear"]),  # a whole package, if you say so ...
        ("torch.hub.load", ["torch.hub.load"]),  # ... and a loader only by its exact name
    ],
)
def test_the_environment_grants_more(trusted: str, allowed: list[str]) -> None:
    script = (
        "from svhn_sweep.sweep.config import check_targets\n"
        "from svhn_sweep.core.errors import ConfigError\n"
        f"for target in {allowed!r}:\n"
        "    check_targets({'model': {'_target_': target}})\n"
        "try:\n"
        "    check_targets({'model': {'_target_': 'torch.load'}})\n"
        "except ConfigError as error:\n"
        "    print('refused:', error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=cli_env(SVHN_SWEEP_TRUSTED_TARGETS=f" {trusted} , "),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("refused: model._target_=torch.load loads code")


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        ("my_hooks.space", "hydra.sweeper.custom_search_space=my_hooks.space is not a hook this project ships"),
        (
            "svhn_sweep.sweep.space.mlp_layrs",
            "hydra.sweeper.custom_search_space=svhn_sweep.sweep.space.mlp_layrs cannot",
        ),
    ],
    ids=["untrusted", "typo"],
)
def test_a_search_space_hook_that_cannot_be_used_is_one_message_naming_the_key(
    tmp_path: Path, hook: str, message: str
) -> None:
    # Hydra loads the hook under its whitelist while it builds the sweeper: its refusal was a traceback.
    result = run_cli(["--multirun", "data=synthetic", f"hydra.sweeper.custom_search_space={hook}"], cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.startswith(message)
    assert not (tmp_path / "outputs").exists()
