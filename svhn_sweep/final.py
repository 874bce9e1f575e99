"""The end of a sweep: compose the best trial's config, retrain it and score it on the test file, once."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from svhn_sweep.results import trials_table
from svhn_sweep.task import retrain_and_test

log = logging.getLogger(__name__)


def best_trial_overrides(config: DictConfig) -> list[str]:
    """The command line's fixed overrides plus the best trial's parameters: exactly that trial's config."""
    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    best = OmegaConf.load(Path(config.hydra.sweep.dir) / "optimization_results.yaml").best_params
    return fixed + [f"{name}={value}" for name, value in best.items()]


class RetrainBest(Callback):
    """Hydra callback: after ``--multirun``, retrain the best config and write ``final/metrics.json``."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        table = trials_table(sweep_dir)
        if not table.empty:
            print(f"\nTop trials of {sweep_dir} (by val accuracy):")
            print(table.head(config.final.top_k).to_string(index=False))
        if not config.final.enabled:
            return
        overrides = best_trial_overrides(config)
        log.info("Retraining the best config: %s", " ".join(overrides))
        best_cfg = compose(config_name=config.hydra.job.config_name, overrides=overrides)
        metrics = retrain_and_test(best_cfg, sweep_dir / "final")
        OmegaConf.save(best_cfg, sweep_dir / "final" / "config.yaml")
        print(
            f"\nBest config retrained on {metrics['trained_on']} ({metrics['train_size']} images) and scored "
            f"once on the test file ({metrics['test_size']} images): test accuracy {metrics['test_accuracy']:.4f}"
        )
