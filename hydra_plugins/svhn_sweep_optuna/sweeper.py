"""``hydra/sweeper=svhn_optuna``: the class Hydra instantiates, which imports its implementation only when built.

Hydra imports every public module of every ``hydra_plugins`` package when any Hydra app starts, to find plugins.
This module and ``config.py`` are what such a scan sees: they import Hydra alone, so installing svhn_sweep costs
other apps nothing (no torch, no Optuna). The sweeper itself lives in ``_impl.py``, which the scan skips, as the
official hydra-optuna-sweeper defers its own ``_impl``.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class PersistentOptunaSweeper(Sweeper):
    """Builds :class:`~hydra_plugins.svhn_sweep_optuna._impl.PersistentOptunaSweeperImpl` and hands it the work."""

    def __init__(self, **config: Any) -> None:
        from hydra_plugins.svhn_sweep_optuna._impl import PersistentOptunaSweeperImpl

        self.impl = PersistentOptunaSweeperImpl(**config)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Hydra's set-up, done by the implementation."""
        self.impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        """The sweep, run by the implementation."""
        self.impl.sweep(arguments)
