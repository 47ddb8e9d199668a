"""The kill -9 rotation (issue 21): while a simulated day is played, SIGKILL one worker of the
cluster at a time, every 10 to 30 wall seconds, and start it again after a short pause with
the same settings (the same data dir, so a RocksDB store comes back with its files), as a
crashing host and its supervisor would.

The victim and the interval are drawn from a seeded RNG, so a seed names one sequence of
victims; the instants depend on the machine. Never more than one worker is down: the next
kill waits until the last victim is back and ready. Every kill is recorded with its wall
instant, so a failure can be read against the worker logs and the fail-over measured
(benchmarks/failover.py). A :class:`Rotation` is a ``simulator.run.Fault``: ``simulate``
begins it once the workers are ready and ends it when the day has been played.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from simulator.run import Worker
from simulator.scenario import Rates
from stream.clock import ScaledClock
from stream.timeutil import format_instant

# The cluster a rotation kills through: two RocksDB workers, each with its own data dir
# (simulate gives each one), and one in memory; a restart finds its local files, or rebuilds
# from ecm.state. ``simulate(worker_changes=...)`` takes it as is.
MIXED_STORES = ({"store": "rocksdb://"}, {"store": "rocksdb://"}, {"store": "memory://"})
# Every failure the simulator injects, at rates that make each happen several times in an
# hour and a half of 1,200 clients.
EVERYTHING = Rates(delay=0.05, missed=0.05, car_park=0.04, poor_fix=0.04, wrong_phone=0.03,
                   wrong_worker=0.03, shortened=0.05, extended=0.05, missing_check_out=0.06,
                   cancel=0.03, late_cancel=0.01, reassign=0.03, move=0.03, duplicate=0.03,
                   offline=0.04, clock_skew=0.04, bad_clock=0.02, no_visit_id=0.3,
                   malformed_per_hour=12.0, unscheduled_per_hour=8.0)

# Readiness must hold this long, all workers at once, before the rotation is over: a
# rebalance the restarted worker triggers can begin just after they all said ready.
_STEADY_S = 2.0
_POLL_S = 0.25


@dataclass
class Kill:
    """One SIGKILL: who, when (wall epoch seconds), and when the worker was back."""

    worker: str
    store: str
    killed_at: float
    restarted_at: float | None = None
    ready_at: float | None = None  # None: not ready again before the next step gave up

    def as_dict(self, clock: ScaledClock | None) -> dict[str, object]:
        out: dict[str, object] = {
            "worker": self.worker, "store": self.store, "killed_at": self.killed_at,
            "restarted_after_s": _after(self.restarted_at, self.killed_at),
            "ready_after_s": _after(self.ready_at, self.killed_at)}
        if clock is not None:
            out["killed_at_sim"] = format_instant(_sim(clock, self.killed_at))
        return out


@dataclass
class Crash:
    """A worker found dead that the rotation did not kill: a finding of its own."""

    worker: str
    found_at: float
    returncode: int | None


class Rotation:
    """Kills and restarts the workers of a simulated run, one at a time, on a seeded
    schedule, from ``begin`` until ``end``."""

    def __init__(self, seed: int, every_s: tuple[float, float] = (10.0, 30.0),
                 pause_s: float = 2.0, ready_timeout_s: float = 120.0,
                 wall: Callable[[], float] = time.time) -> None:
        self.rng = random.Random(seed)
        self.every_s = every_s
        self.pause_s = pause_s
        self.ready_timeout_s = ready_timeout_s
        self.wall = wall
        self.kills: list[Kill] = []
        self.crashes: list[Crash] = []
        self.workers: list[Worker] = []
        self.clock: ScaledClock | None = None
        self.all_ready_at_end: bool | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ended = False

    # ---- simulator.run.Fault ----------------------------------------------------------------

    def begin(self, workers: list[Worker], clock: ScaledClock) -> None:
        self.workers, self.clock = workers, clock
        self._thread = threading.Thread(target=self._run, name="rotation", daemon=True)
        self._thread.start()

    def end(self) -> None:
        """Stop killing; bring back any worker that is down and wait until all are ready, so
        what the day owes is published before it is scored. Never raises: ``simulate``
        calls it from a ``finally`` too."""
        if self._ended:
            return
        self._ended = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.ready_timeout_s + self.pause_s + 10)
        for w in self.workers:
            self._revive_if_dead(w)
        self.all_ready_at_end = self._wait_all_ready(self.ready_timeout_s)
        if not self.all_ready_at_end:
            print("rotation: not every worker ready at the end of the day", flush=True)

    # ---- the schedule -----------------------------------------------------------------------

    def _run(self) -> None:
        last = self.wall()
        while True:
            wait = self.rng.uniform(*self.every_s)
            victim = self.rng.choice(self.workers)
            if self._stop.wait(max(0.0, last + wait - self.wall())):
                return
            # At most one down: the last victim (or a crashed worker) must be back first.
            for w in self.workers:
                self._revive_if_dead(w)
            if not self._wait_all_ready(self.ready_timeout_s) or self._stop.is_set():
                return
            last = self.wall()
            self._kill_and_restart(victim)

    def _kill_and_restart(self, w: Worker) -> None:
        kill = Kill(w.name, w.settings.store, self.wall())
        w.kill()
        self.kills.append(kill)
        print(f"rotation: SIGKILL {w.name} ({w.settings.store}) at {self._sim(kill.killed_at)}",
              flush=True)
        # The pause is not cut short by end(): a restart is what a supervisor would do.
        time.sleep(self.pause_s)
        self._mark(w, f"SIGKILL by the rotation at {self._sim(kill.killed_at)}; restarted")
        w.start()
        kill.restarted_at = self.wall()
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline and w.running:
            if w.ready():
                kill.ready_at = self.wall()
                return
            time.sleep(_POLL_S)

    def _revive_if_dead(self, w: Worker) -> None:
        if w.process is not None and not w.running:
            crash = Crash(w.name, self.wall(), w.process.returncode)
            self.crashes.append(crash)
            print(f"rotation: {w.name} died by itself (exit {crash.returncode}); restarted",
                  flush=True)
            self._mark(w, f"found dead (exit {crash.returncode}); restarted")
            w.start()

    def _wait_all_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        steady_since: float | None = None
        while time.monotonic() < deadline:
            if all(w.ready() for w in self.workers):
                steady_since = steady_since or time.monotonic()
                if time.monotonic() - steady_since >= _STEADY_S:
                    return True
            else:
                steady_since = None
            time.sleep(_POLL_S)
        return False

    # ---- records ----------------------------------------------------------------------------

    def _sim(self, wall: float) -> str:
        return "-" if self.clock is None else format_instant(_sim(self.clock, wall))

    @staticmethod
    def _mark(w: Worker, what: str) -> None:
        """A line in the worker's log between the dead process's output and the new one's."""
        with w.log.open("a") as f:
            f.write(f"\n=== {w.name}: {what} ===\n")

    def summary(self) -> list[dict[str, object]]:
        return [k.as_dict(self.clock) for k in self.kills]

    def describe(self) -> str:
        """The kills, one a line, for an assertion message."""
        lines = [f"{len(self.kills)} kills, {len(self.crashes)} crashes"]
        for k in self.kills:
            lines.append(f"  {self._sim(k.killed_at)}  SIGKILL {k.worker} ({k.store}); "
                         f"restarted +{_fmt(_after(k.restarted_at, k.killed_at))} s, "
                         f"ready +{_fmt(_after(k.ready_at, k.killed_at))} s")
        for c in self.crashes:
            lines.append(f"  {self._sim(c.found_at)}  {c.worker} found dead, "
                         f"exit {c.returncode}")
        return "\n".join(lines)


def _sim(clock: ScaledClock, wall: float) -> float:
    """The simulated instant at wall-clock instant ``wall``."""
    return clock.sim_start + (wall - clock.wall_start) * clock.speed


def _after(t: float | None, since: float) -> float | None:
    return None if t is None else round(t - since, 2)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"
