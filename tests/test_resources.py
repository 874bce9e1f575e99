"""How a sweep spends the machine, without a sweep: the time budget, the trials in flight and their devices (a
multi-GPU machine's assignment, with the device count passed in), and the sampler for trials in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from hydra_plugins.svhn_sweep_optuna.sweeper import PersistentOptunaSweeper
from svhn_sweep.__main__ import CONFIG_DIR
from svhn_sweep.core.errors import ConfigError
from svhn_sweep.sweep.resources import parse_timeout, slot_device, trials_in_flight


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


@pytest.mark.parametrize(
    ("n_jobs", "per_device", "devices", "in_flight"),
    [(None, 1, 0, 1), (None, 2, 0, 2), (None, 1, 1, 1), (None, 1, 4, 4), (None, 2, 4, 8), (3, 2, 4, 3), (1, 1, 8, 1)],
)
def test_trials_in_flight_are_n_jobs_or_trials_per_device_on_each_device(n_jobs, per_device, devices, in_flight):
    assert trials_in_flight(n_jobs, per_device, devices) == in_flight


@pytest.mark.parametrize(("n_jobs", "per_device", "key"), [(0, 1, "n_jobs=0"), (None, 0, "trials_per_device=0")])
def test_no_trials_in_flight_is_named_with_its_key(n_jobs, per_device, key) -> None:
    with pytest.raises(ConfigError, match=rf"hydra\.sweeper\.{key}: must be >= 1"):
        trials_in_flight(n_jobs, per_device, 2)


@pytest.mark.parametrize(("devices", "per_device"), [(2, 1), (2, 3), (4, 1), (4, 2), (3, 2)])
def test_a_batch_is_spread_evenly_over_every_device(devices: int, per_device: int) -> None:
    in_flight = trials_in_flight(None, per_device, devices)
    assigned = [slot_device("auto", slot, devices) for slot in range(in_flight)]
    assert {f"cuda:{d}": per_device for d in range(devices)} == {d: assigned.count(d) for d in set(assigned)}
    assert [slot_device("cuda", slot, devices) for slot in range(in_flight)] == assigned


def test_fewer_trials_than_devices_never_share_one() -> None:
    assert [slot_device("auto", slot, 4) for slot in range(2)] == ["cuda:0", "cuda:1"]  # not both on cuda:0


@pytest.mark.parametrize(
    ("choice", "slot", "devices"),
    [
        ("cpu", 3, 4),  # asked for the CPU: stays there
        ("auto", 3, 0),  # no CUDA: auto stays auto (the CPU)
        ("auto", 3, 1),  # one card, e.g. a SLURM job given one: whatever its slot, it trains on it
        ("auto", None, 4),  # not a sweep's trial (a single run, the final retrain): the default device
    ],
)
def test_only_trials_of_a_batch_that_see_several_cuda_devices_are_moved(choice, slot, devices) -> None:
    assert slot_device(choice, slot, devices) == choice


@pytest.fixture
def sweeper() -> Iterator[Callable[..., PersistentOptunaSweeper]]:
    """The sweeper as Hydra builds it from ``conf/train.yaml`` and hydra.* overrides, with its config (no launcher)."""
    with initialize_config_dir(config_dir=CONFIG_DIR):

        def build(*overrides: str) -> PersistentOptunaSweeper:
            cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
            built = instantiate(cfg.hydra.sweeper, _recursive_=False, _execution_whitelist_="hydra_plugins.*")
            built.impl.config = cfg  # what setup() keeps (it also builds the launcher, which these tests need not)
            return built

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
    sampler = sweeper(*overrides).impl._build_sampler().sampler_for(3)  # the sampler of trial 3
    assert isinstance(sampler, optuna.samplers.TPESampler) and sampler._constant_liar is liar
    assert sampler._n_startup_trials == 10  # the rest of the sampler's config is as configured


def test_a_sampler_without_constant_liar_is_built_as_configured(sweeper) -> None:
    sampler = sweeper("hydra.sweeper.n_jobs=2", "hydra/sweeper/sampler=random").impl._build_sampler()
    assert isinstance(sampler.sampler_for(0), optuna.samplers.RandomSampler)
