"""Errors a user can fix by hand. Hydra prints only their message, never a traceback."""

try:  # Hydra prints only the message of a CompactHydraException
    from hydra.errors import CompactHydraException
except ImportError:  # the training modules also run without Hydra: benchmarks/bench.py on a bare GPU machine
    CompactHydraException = Exception


class UserError(CompactHydraException):
    """A mistake in the input (config, data, environment); the message names it and says what to do."""


class ConfigError(UserError, ValueError):
    """A config value no run can use, named by its key."""
