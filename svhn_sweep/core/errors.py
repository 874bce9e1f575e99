"""Errors a user can fix by hand: the message names the key or file and says what to do.

Plain exceptions, so the core needs no Hydra; the sweep hands them to Hydra as messages without a traceback
(:func:`svhn_sweep.sweep.errors.reported`).
"""


class UserError(Exception):
    """A mistake in the input (config, data, environment); the message names it and says what to do."""


class ConfigError(UserError, ValueError):
    """A config value no run can use, named by its key."""
