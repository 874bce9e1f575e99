"""The sweep's sampler: any sampler hydra-optuna-sweeper offers, its randomness drawn per trial number.

A seeded Optuna sampler holds one random stream from its construction on. A study that outlives the process
(resumed, extended, shared by workers) would replay that stream in every command and worker, proposing again
the parameters it already has. Here each trial gets a sampler of its own, seeded from the sweep's seed and the
trial's place among the study's trials that are not interrupted ones (for a sweep never interrupted, its
number): a seeded sweep run once is reproducible, a resumed one goes on where it was, workers sharing a study
draw different trials, and a sweep interrupted and resumed proposes the trials it would have proposed anyway
(an interrupted trial is retried with its own parameters, and what comes after is drawn as if it had not been
stopped). What a sampler learns from the study (TPE's model, CMA-ES's state, NSGA-II's population) it reads from
the storage, as it always does.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, QMCSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from svhn_sweep.core.errors import ConfigError
from svhn_sweep.sweep.retries import is_interrupted

# Samplers whose seed must stay the same for the whole study: QMC's scrambled sequence is one sequence, indexed by
# the trial's place in it, so a seed per trial would break it (and it repeats nothing when resumed).
ONE_SEED_PER_STUDY = (QMCSampler,)


def trial_seed(seed: int, place: int) -> int:
    """The seed of the sampler of the trial at ``place``: independent streams for every (seed, place) pair."""
    return int(np.random.SeedSequence([seed, place]).generate_state(1)[0])


def place_of(study: Study, trial: FrozenTrial) -> int:
    """How many of the study's trials before ``trial`` are not interrupted ones: its number, less the attempts
    that were stopped from outside (each of which has a retry of its own that does count).
    """
    return sum(t.number < trial.number and not is_interrupted(t) for t in study.get_trials(deepcopy=False))


class TrialSeededSampler(BaseSampler):
    """Delegates every call about a trial to a sampler built for that trial, seeded by :func:`trial_seed` from the
    trial's :func:`place_of` when the trial starts (``before_trial``).
    """

    def __init__(self, build: Callable[[int | None], BaseSampler], seed: int | None) -> None:
        self._build = build
        self._seed = seed
        self._samplers: dict[int, BaseSampler] = {}  # trials asked by this process and not told yet
        self.prototype = build(seed)  # what the sampler is, for logs and for calls that concern no trial

    def sampler_for(self, number: int, place: int | None = None) -> BaseSampler:
        """Trial ``number``'s sampler, built on first use for the trial at ``place`` (default: its number)."""
        if number not in self._samplers:
            seed = None if self._seed is None else trial_seed(self._seed, number if place is None else place)
            self._samplers[number] = self._build(seed)
        return self._samplers[number]

    def __str__(self) -> str:
        return f"{type(self.prototype).__name__} (seeded per trial)"

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """The trial's sampler's relative search space."""
        return self.sampler_for(trial.number).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """The trial's sampler's joint sample."""
        return self.sampler_for(trial.number).sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        """The trial's sampler's sample of one parameter."""
        return self.sampler_for(trial.number).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        """The trial's sampler, built for its place, and its preparation (e.g. the grid point a GridSampler assigns)."""
        self.sampler_for(trial.number, place_of(study, trial)).before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: list[float] | None) -> None:
        """The trial's sampler's bookkeeping; its sampler is dropped."""
        sampler = self.sampler_for(trial.number)
        self._samplers.pop(trial.number, None)
        sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        """Nothing to reseed: every trial's sampler is seeded from the sweep's seed and its number."""


def build_sampler(
    make: Callable[..., BaseSampler], seed: int | None, grid: dict[str, list[Any]] | None = None
) -> BaseSampler:
    """The sweep's sampler from ``make(seed=..., **grid_args)`` (the configured node, instantiated partially).

    GridSampler takes the grid the search space enumerates; QMC keeps one seed for the study; every other sampler
    is seeded per trial.
    """
    extra = {} if grid is None else {"search_space": grid}
    prototype = make(seed=seed, **extra)
    if isinstance(prototype, ONE_SEED_PER_STUDY):
        return prototype
    return TrialSeededSampler(lambda trial_seed_: make(seed=trial_seed_, **extra), seed)


def check_sampler_available(target: str) -> None:
    """Samplers that need a package Optuna does not install: one message before anything runs."""
    if target.endswith("CmaEsSampler") and importlib.util.find_spec("cmaes") is None:
        raise ConfigError(
            "hydra/sweeper/sampler=cmaes needs the cmaes package: pip install -e '.[cmaes]' (or pip install cmaes)."
        )


def grid_size(grid: dict[str, list[Any]]) -> int:
    """The number of points of a grid: the product of its axes' lengths."""
    return int(np.prod([len(choices) for choices in grid.values()], dtype=np.int64)) if grid else 1
