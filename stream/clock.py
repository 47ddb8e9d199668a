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

    def from_wall(self, wall: float) -> float:
        """The instant on this clock at which the wall clock read ``wall`` (a Kafka
        record's timestamp, say)."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()

    def from_wall(self, wall: float) -> float:
        return wall


class ManualClock:
    """A clock that moves only when told to; for tests and replays."""

    def __init__(self, start: float) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def from_wall(self, wall: float) -> float:
        """A manual clock has no wall clock: instants given to it are its own."""
        return wall

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not run backwards")
        self._now += seconds
        return self._now

    def set(self, instant: float) -> None:
        if instant < self._now:
            raise ValueError("a clock does not run backwards")
        self._now = float(instant)


class ScaledClock:
    """Simulated time that runs ``speed`` times faster than the wall clock.

    ``sim_start`` (simulated epoch seconds) is the instant the wall clock reads
    ``wall_start``. A simulator and the workers given the same three numbers agree on "now"
    to within their wall clocks, so a compressed day is judged in simulated time.
    """

    def __init__(self, sim_start: float, wall_start: float, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.sim_start = sim_start
        self.wall_start = wall_start
        self.speed = speed

    def now(self) -> float:
        return self.sim_start + (time.time() - self.wall_start) * self.speed

    def from_wall(self, wall: float) -> float:
        return self.sim_start + (wall - self.wall_start) * self.speed

    def wall_at(self, sim_instant: float) -> float:
        """The wall-clock instant at which simulated time reaches ``sim_instant``."""
        return self.wall_start + (sim_instant - self.sim_start) / self.speed
