"""``python -m svhn_sweep``: one training run, or with ``--multirun`` the Optuna sweep over ``conf/``."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import execution_whitelist
from omegaconf import DictConfig

from svhn_sweep.core.errors import UserError
from svhn_sweep.sweep.config import CONFIG_DIR, TRUSTED_TARGETS, register_configs
from svhn_sweep.sweep.interrupts import exit_status, terminating_signals_interrupt
from svhn_sweep.sweep.pruning import StoppedEarly
from svhn_sweep.sweep.trial import train_and_validate

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
    """Console entry point; Hydra's own instantiations (callbacks, sweeper) get the same trust list.

    SIGTERM and SIGHUP stop it as Ctrl-C does (:mod:`svhn_sweep.sweep.interrupts`); the exit status is 128 + the
    signal's number.
    """
    try:
        with terminating_signals_interrupt(), execution_whitelist(TRUSTED_TARGETS):
            task()
    except KeyboardInterrupt as interrupt:  # Ctrl-C, SIGTERM or SIGHUP
        print("Interrupted. Finished trials are kept in the study; run the same command to resume.", file=sys.stderr)
        sys.exit(exit_status(interrupt))


if __name__ == "__main__":
    main()
