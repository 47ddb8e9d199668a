"""The worker's clock, injected everywhere a decision depends on "now".

Deadlines are judged against a :class:`Clock`, never against ``datetime.now()`` directly, so
tests advance a :class:`ManualClock` by hand instead of sleeping. Instants are float
seconds since the Unix epoch, UTC; :func:`stream.timeutil.to_datetime` turns one into an aware
``datetime`` at the edges.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch, UTC."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to; for tests and replays."""

    def __init__(self, start: float) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not run backwards")
        self._now += seconds
        return self._now

    def set(self, instant: float) -> None:
        if instant < self._now:
            raise ValueError("a clock does not run backwards")
        self._now = float(instant)
