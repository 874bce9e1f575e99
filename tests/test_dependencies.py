"""What the package imports is what ``pyproject.toml`` declares (issue 17 item 8): a module-level import needs a
dependency, one inside a function (an optional feature: a tracker, Parquet) at least an extra; a package that comes
only through another one's requirements can vanish with its next release.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from pathlib import Path

import tomllib

from tests.conftest import REPO

FIRST_PARTY = {"svhn_sweep", "tests", "benchmarks"}
OWN_PLUGIN = "hydra_plugins.svhn_sweep_optuna"


def imports(path: Path) -> tuple[set[str], set[str]]:
    """A file's imported modules (absolute imports only): those at module level, and those inside functions."""
    tree = ast.parse(path.read_text())
    nested = {id(node) for function in ast.walk(tree) if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
              for node in ast.walk(function)}  # fmt: skip
    top, inner = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = {node.module}
        else:
            continue
        (inner if id(node) in nested else top).update(names)
    return top, inner


@functools.cache
def top_level_owners() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


@functools.cache
def distribution(module: str) -> str | None:
    """The installed distribution a module comes from (None: the standard library or this project)."""
    parts = module.split(".")
    if parts[0] in sys.stdlib_module_names or parts[0] in FIRST_PARTY or module.startswith(OWN_PLUGIN):
        return None
    if parts[0] == "hydra_plugins":  # a namespace several distributions share: the plugin's own folder says which
        owners = [
            dist.metadata["Name"]
            for dist in importlib.metadata.distributions()
            if any(str(file).startswith(f"hydra_plugins/{parts[1]}/") for file in dist.files or ())
        ]
    else:
        owners = top_level_owners().get(parts[0], [])
    assert len(set(owners)) == 1, f"{module}: comes from {owners}"
    return owners[0]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> tuple[set[str], set[str]]:
    """The distributions ``pyproject.toml`` requires, and those its extras add."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {canonical(re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)) for requirement in requirements}

    extras = set().union(*(names(group) for group in project["optional-dependencies"].values()))
    return names(project["dependencies"]), extras


def test_every_imported_distribution_is_declared() -> None:
    required, extras = declared()
    sources = [*REPO.glob("svhn_sweep/**/*.py"), *REPO.glob("hydra_plugins/**/*.py")]
    assert len(sources) > 20
    undeclared = {}
    for path in sources:
        top, inner = imports(path)
        for modules, allowed in ((top, required), (inner, required | extras)):
            for module in modules:
                dist = distribution(module)
                if dist is not None and canonical(dist) not in allowed:
                    undeclared[f"{path.relative_to(REPO)}: {module}"] = dist
    assert undeclared == {}


def test_the_check_sees_the_direct_imports_the_issue_found() -> None:
    """The modules the issue found, imported at module level (sqlalchemy, yaml), map to their distributions."""
    top, _ = imports(REPO / "svhn_sweep" / "sweep" / "study.py")
    assert {"sqlalchemy", "yaml"} <= {module.split(".")[0] for module in top}
    assert canonical(distribution("yaml")) == "pyyaml" and canonical(distribution("sqlalchemy.engine")) == "sqlalchemy"
    assert canonical(distribution("hydra_plugins.hydra_optuna_sweeper._impl")) == "hydra-optuna-sweeper"
