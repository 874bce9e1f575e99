"""How a sweep spends the machine: its time budget, how many trials are in flight, and which device each trains on.

Pure functions of config values and a device count, so that what a multi-GPU machine would do is tested on a CPU:
the sweeper calls :func:`parse_timeout` and :func:`trials_in_flight` once, every job calls :func:`slot_device`.
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


def trials_in_flight(n_jobs: int | None, trials_per_device: int, devices: int) -> int:
    """How many trials the sweeper asks for at once: ``n_jobs`` when set, else ``trials_per_device`` per device.

    ``devices`` is the number of CUDA devices the trials may use (0 or 1 both mean one device: the CPU or a GPU).
    """
    if n_jobs is not None and n_jobs < 1:
        raise ConfigError(
            f"Invalid config value hydra.sweeper.n_jobs={n_jobs!r}: must be >= 1, or null for "
            "hydra.sweeper.trials_per_device on every visible device."
        )
    if trials_per_device < 1:
        raise ConfigError(f"Invalid config value hydra.sweeper.trials_per_device={trials_per_device!r}: must be >= 1.")
    return n_jobs if n_jobs is not None else trials_per_device * max(1, devices)


def slot_device(choice: str, slot: int | None, devices: int) -> str:
    """The device of the trial in position ``slot`` of its batch: with several CUDA devices, ``cuda:(slot % n)``.

    Only ``trainer.device=auto`` or ``cuda`` are spread, and only when the job sees more than one CUDA device;
    the job counts them itself, so the spread is right under any launcher (a SLURM job that sees one card
    trains on it, whatever its slot). An explicit ``cpu`` stays as it is.
    """
    if choice in ("auto", "cuda") and slot is not None and devices > 1:
        return f"cuda:{slot % devices}"
    return choice
