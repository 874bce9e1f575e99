"""Search spaces a flat list of sweep entries cannot state: define-by-run hooks for
``hydra.sweeper.custom_search_space``.

hydra-optuna-sweeper calls the hook with the sweep's config and the Optuna trial after the entries of
``hydra.sweeper.params`` are sampled. svhn_sweep's sweeper also takes a hook that returns config values composed
from its own parameters (see ``PersistentOptunaSweeper._trial_values``): that is how layer widths that exist only
for some depths become one ``model.hidden_sizes`` list.
"""

from __future__ import annotations

from typing import Any

import optuna
from omegaconf import DictConfig

MAX_LAYERS = 3
MIN_WIDTH, MAX_WIDTH = 32, 2048


def mlp_layers(cfg: DictConfig, trial: optuna.Trial) -> dict[str, Any]:
    """``search=mlp_layers``: depth ``layers`` (1..3), then a width ``width_<i>`` (integer, log scale) for each
    layer the depth reaches, and no other: TPE learns each width from the trials that have that layer.
    """
    depth = trial.suggest_int("layers", 1, MAX_LAYERS)
    widths = [trial.suggest_int(f"width_{i}", MIN_WIDTH, MAX_WIDTH, log=True) for i in range(1, depth + 1)]
    return {"model.hidden_sizes": widths}
