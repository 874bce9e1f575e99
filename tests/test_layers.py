"""The layers the tree shows: core (plain PyTorch) <- sweep (Hydra, Optuna) <- review <- the commands.

A module may import from its own layer and the layers below it, never from one above; the core imports neither
Hydra, OmegaConf nor Optuna, so the training path runs where only torch is installed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, WITHOUT_HYDRA, cli_env

PACKAGE = REPO / "svhn_sweep"
COMMANDS = ("svhn_sweep.__main__", "svhn_sweep.final", "svhn_sweep.predict", "svhn_sweep.report")
FORBIDDEN = {
    "core": ("hydra", "omegaconf", "optuna", "hydra_plugins", "svhn_sweep.sweep", "svhn_sweep.review", *COMMANDS),
    "sweep": ("svhn_sweep.review", *COMMANDS),
    "review": COMMANDS,
}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (lazy imports count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def breaks_rule(module: str, forbidden: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in forbidden)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_from_a_layer_above_it(layer: str) -> None:
    files = sorted((PACKAGE / layer).glob("*.py"))
    assert files, f"svhn_sweep/{layer} has no modules"
    offences = {
        str(path.relative_to(REPO)): sorted(m for m in imported_modules(path) if breaks_rule(m, FORBIDDEN[layer]))
        for path in files
    }
    assert {path: bad for path, bad in offences.items() if bad} == {}


def test_every_package_module_belongs_to_a_layer_or_is_a_command() -> None:
    top_level = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top_level == {"__main__", "constants", "final", "predict", "report"}
    assert imported_modules(PACKAGE / "constants.py") == set()  # importable from every layer


@pytest.mark.slow
def test_the_core_imports_and_trains_without_hydra_omegaconf_or_optuna() -> None:
    """Import every core module with those packages unimportable, and train a step: no import hides anywhere."""
    script = (
        WITHOUT_HYDRA
        + """
import importlib, pkgutil
import svhn_sweep.core
for module in pkgutil.iter_modules(svhn_sweep.core.__path__):
    importlib.import_module('svhn_sweep.core.' + module.name)
import torch
from svhn_sweep.core.data import Normalizer, Split
from svhn_sweep.core.models import MLP
from svhn_sweep.core.train import fit
images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
split = Split(images, torch.randint(0, 10, (64,)))
model = MLP([8])
history = fit(model, torch.optim.SGD(model.parameters(), lr=0.1), None, split, split, Normalizer([0.5] * 3, [0.2] * 3),
              epochs=1, batch_size=16, seed=0)
assert not [name for name in sys.modules if name.split('.')[0] in ('hydra', 'omegaconf', 'optuna')]
print('trained', len(history))
"""
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "trained 1"


PLAIN_APP = """
import sys
import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf


@hydra.main(config_path=None, config_name=None)
def main(cfg) -> None:
    Plugins.instance().discover(Sweeper)  # every plugin module imported, as a --multirun would
    tpe = ConfigStore.instance().load("hydra/sweeper/sampler/tpe.yaml").node
    print(sorted(m for m in ("torch", "optuna", "svhn_sweep.sweep") if m in sys.modules))
    print(OmegaConf.get_type(tpe).__module__, tpe._target_)


main()
"""


@pytest.mark.slow
def test_installing_the_package_changes_no_other_hydra_app(tmp_path: Path) -> None:
    """A plain Hydra app beside svhn_sweep: Hydra's plugin scan imports this package's plugin modules, which must
    import nothing heavy and leave the official sampler nodes as hydra-optuna-sweeper stores them.
    """
    (tmp_path / "app.py").write_text(PLAIN_APP)
    result = subprocess.run(
        [sys.executable, "app.py", f"hydra.run.dir={tmp_path / 'out'}"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == ["[]", "hydra_plugins.hydra_optuna_sweeper.config optuna.samplers.TPESampler"]
