"""``hydra/sweeper=svhn_optuna``: the official sweeper's config plus what persistence and pruning need."""

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf


@dataclass
class PersistentOptunaSweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.svhn_sweep_optuna.sweeper.PersistentOptunaSweeper"
    # RDB URL of the study; a relative SQLite path is taken from where the command runs.
    storage: Any = "sqlite:///outputs/optuna.db"
    # null: derived from the config name, model, data, fixed overrides and search space.
    n_jobs: int = 1
    # Crashed trials (not diverged ones) tolerated, as a fraction of n_trials, before the sweep stops.
    max_failure_rate: float = 0.25
    # Seconds between heartbeats of a running trial; one silent for grace_period is marked FAIL.
    heartbeat_interval: int = 10
    grace_period: int = 30
    # Before the final step, wait for trials that other workers of the same study are still running.
    wait_for_workers: bool = True


ConfigStore.instance().store(group="hydra/sweeper", name="svhn_optuna", node=PersistentOptunaSweeperConf,
                             provider="svhn_sweep")
