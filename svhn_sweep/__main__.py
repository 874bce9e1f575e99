"""``python -m svhn_sweep``: one training run, or with ``--multirun`` the Optuna sweep over ``conf/``."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import execution_whitelist
from omegaconf import DictConfig

from svhn_sweep.core.errors import UserError
from svhn_sweep.sweep.config import TRUSTED_TARGETS, register_configs
from svhn_sweep.sweep.pruning import StoppedEarly
from svhn_sweep.sweep.trial import train_and_validate

# The configs ship inside the package, so a checkout and an installed wheel find them at the same place.
CONFIG_DIR = str(Path(__file__).parent / "conf")

register_configs()


# No version_base: Hydra 1.4 deprecates the argument, and leaving it out selects its current defaults.
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
        print("Interrupted. Finished trials are kept in the study; run the same command to resume.", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
