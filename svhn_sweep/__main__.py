"""``python -m svhn_sweep``: one training run, or with ``--multirun`` the Optuna sweep over ``conf/``."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import execution_whitelist
from omegaconf import DictConfig

from svhn_sweep.config import TRUSTED_TARGETS, register_configs
from svhn_sweep.errors import UserError
from svhn_sweep.pruning import StoppedEarly
from svhn_sweep.task import train_and_validate

# An installed wheel carries the configs inside the package; a source checkout keeps them at the top level.
_PACKAGED = Path(__file__).parent / "conf"
CONFIG_DIR = str(_PACKAGED if _PACKAGED.is_dir() else Path(__file__).parent.parent / "conf")

register_configs()


@hydra.main(config_path=CONFIG_DIR, config_name="train")
def task(cfg: DictConfig) -> float | StoppedEarly:
    """The task function: train one config and hand its val accuracy to the sweeper.

    In a sweep, errors go to the sweeper, which records the trial; in a single run, a mistake the user can
    fix ends the run with its message alone.
    """
    try:
        return train_and_validate(cfg, Path(HydraConfig.get().runtime.output_dir))
    except UserError as error:
        if cfg.sweep.trial is not None:
            raise
        sys.exit(str(error))  # the message alone, on stderr, exit status 1


def main() -> None:
    """Console entry point; Hydra's own instantiations (callbacks, sweeper) get the same trust list."""
    try:
        with execution_whitelist(TRUSTED_TARGETS):
            task()
    except KeyboardInterrupt:
        print("Interrupted. Finished trials are kept in the study; run the same command to resume.",
              file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
