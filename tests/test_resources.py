"""How a sweep spends the machine, as pure functions: the time budget (no sweep needed)."""

from __future__ import annotations

import pytest

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
