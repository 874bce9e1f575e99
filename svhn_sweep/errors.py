"""Errors a user can fix by hand. Hydra prints only their message, never a traceback."""

from hydra.errors import CompactHydraException


class UserError(CompactHydraException):
    """A mistake in the input (config, data, environment); the message names it and says what to do."""


class ConfigError(UserError, ValueError):
    """A config value no run can use, named by its key."""
