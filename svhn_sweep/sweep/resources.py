"""How a sweep spends the machine: its time budget.

Pure functions of config values, tested without a sweep: the sweeper calls :func:`parse_timeout` once, before the
first trial.
"""

from __future__ import annotations

import math
import re
from typing import Any

from svhn_sweep.core.errors import ConfigError

TIMEOUT_KEY = "hydra.sweeper.timeout"
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", re.IGNORECASE)


def parse_timeout(value: Any) -> float | None:
    """``hydra.sweeper.timeout`` in seconds: a number of seconds or a string such as ``90s``, ``15m``, ``2h``.

    None (null) means no time limit. Anything else is named with the key, before the sweep starts.
    """
    if value is None:
        return None
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    if seconds is None or not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigError(
            f"Invalid config value {TIMEOUT_KEY}={value!r}: give a positive number of seconds (600) or a duration "
            "such as 90s, 15m or 2h; null for no time limit."
        )
    return seconds
