"""``python -m svhn_sweep``: one training run, or with ``--multirun`` the Optuna sweep over ``conf/``."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import execution_whitelist
from omegaconf import DictConfig

from svhn_sweep.config import TRUSTED_TARGETS, register_configs
from svhn_sweep.task import train_and_validate

# An installed wheel carries the configs inside the package; a source checkout keeps them at the top level.
_PACKAGED = Path(__file__).parent / "conf"
CONFIG_DIR = str(_PACKAGED if _PACKAGED.is_dir() else Path(__file__).parent.parent / "conf")

register_configs()


@hydra.main(config_path=CONFIG_DIR, config_name="train")
def task(cfg: DictConfig) -> float:
    """The task function: train one config and hand its val accuracy to the sweeper."""
    return train_and_validate(cfg, Path(HydraConfig.get().runtime.output_dir))


def main() -> None:
    """Console entry point; Hydra's own instantiations (callbacks, sweeper) get the same trust list."""
    with execution_whitelist(TRUSTED_TARGETS):
        task()


if __name__ == "__main__":
    main()
