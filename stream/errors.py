"""The project's errors.

Bad input is data, not an exception: a record that fails validation becomes a
:class:`stream.contract.Rejection` and goes to the dead-letter topic. Exceptions are for
the operator's mistakes and for the broker going away::

    EcmError
    ├── SettingsError        a setting is missing or malformed (also a ValueError)
    ├── BrokerError          the embedded broker cannot start or stop
    └── RecoveryError        a partition's state cannot be rebuilt from its topics
"""

from __future__ import annotations


class EcmError(Exception):
    """Root of every error this project raises on purpose."""


class SettingsError(EcmError, ValueError):
    """A setting from the environment or the command line is invalid."""


class BrokerError(EcmError):
    """The embedded broker failed to start or to stop."""


class RecoveryError(EcmError):
    """A partition's state could not be rebuilt from its changelog."""
