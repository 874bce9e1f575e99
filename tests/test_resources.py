"""How a sweep spends the machine, without a sweep: the time budget, and the sampler for trials in flight."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from hydra_plugins.svhn_sweep_optuna.sweeper import PersistentOptunaSweeper
from svhn_sweep.__main__ import CONFIG_DIR
from svhn_sweep.core.errors import ConfigError
from svhn_sweep.sweep.resources import parse_timeout


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        (600, 600.0),
        (2.5, 2.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        (" 1.5H ", 5400.0),
        ("0.1s", 0.1),
    ],
)
def test_timeout_takes_seconds_or_a_duration_with_its_unit(value: object, seconds: float | None) -> None:
    assert parse_timeout(value) == seconds


@pytest.mark.parametrize("value", ["soon", "15 minutes", "1h30m", "-5m", "", 0, -1, True, float("inf"), [60]])
def test_a_timeout_that_is_no_duration_is_named_with_its_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"hydra\.sweeper\.timeout=.*90s, 15m or 2h; null for no time limit"):
        parse_timeout(value)


@pytest.fixture
def sweeper() -> Iterator[Callable[..., PersistentOptunaSweeper]]:
    """The sweeper as Hydra builds it from ``conf/train.yaml`` and hydra.* overrides (not set up: no launch)."""
    with initialize_config_dir(config_dir=CONFIG_DIR):

        def build(*overrides: str) -> PersistentOptunaSweeper:
            cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
            return instantiate(cfg.hydra.sweeper, _recursive_=False, _execution_whitelist_="hydra_plugins.*")

        yield build


@pytest.mark.parametrize(
    ("overrides", "liar"),
    [
        (["hydra.sweeper.n_jobs=2"], True),  # trials in flight: TPE must not propose one region for the batch
        (["hydra.sweeper.n_jobs=1"], False),
        (["hydra.sweeper.n_jobs=2", "hydra.sweeper.sampler.constant_liar=false"], False),  # the user's choice stays
        (["hydra.sweeper.n_jobs=1", "hydra.sweeper.sampler.constant_liar=true"], True),
    ],
)
def test_tpe_lies_about_running_trials_exactly_when_several_are_in_flight(sweeper, overrides, liar) -> None:
    sampler = sweeper(*overrides)._sampler()
    assert isinstance(sampler, optuna.samplers.TPESampler) and sampler._constant_liar is liar
    assert sampler._n_startup_trials == 10  # the rest of the sampler's config is as configured


def test_a_sampler_without_constant_liar_is_built_as_configured(sweeper) -> None:
    sampler = sweeper("hydra.sweeper.n_jobs=2", "hydra/sweeper/sampler=random")._sampler()
    assert isinstance(sampler, optuna.samplers.RandomSampler)
