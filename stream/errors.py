"""The project's errors.

Bad input is data, not an exception: a record that fails validation becomes a
:class:`stream.contract.Rejection` and goes to the dead-letter topic. Exceptions are for
the operator's mistakes and for the broker going away::

    EcmError
    ├── SettingsError        a setting is missing or malformed (also a ValueError)
    ├── BrokerError          the embedded broker cannot start or stop
    └── FaustVersionError    Faust's internals are patched for another Faust version

A record in the topics a partition is rebuilt from that cannot be read back is not an
error either: it is skipped, logged and counted (stream/worker/recovery.py).
"""

from __future__ import annotations


class EcmError(Exception):
    """Root of every error this project raises on purpose."""


class SettingsError(EcmError, ValueError):
    """A setting from the environment or the command line is invalid."""


class BrokerError(EcmError):
    """The embedded broker failed to start or to stop."""


class FaustVersionError(EcmError):
    """stream/worker/faust_patches.py was written for another version of Faust."""
