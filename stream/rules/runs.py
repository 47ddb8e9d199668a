"""Worker runs: each worker's visits of the day in order, where the worker is, and when they
will reach each visit they have not reached yet (docs/rules.md, "Worker runs").

Visits are partitioned by client and a run crosses clients, so this is a second keyed view:
a *run partition* holds the runs of the workers whose id hashes to it, and is fed what a run
needs by the visit partitions: each visit's rostered workers, window, location and late
deadline (:class:`Stop`), and each check-in and check-out (:meth:`Runs.event`). It answers
with a :class:`Prediction` per visit not yet reached, sent back to the visit's partition,
which raises ``at_risk`` and states the ETA and the cause (stream/rules/at_risk.py).

**The prediction.** Where the worker is decides where the chain starts: checked out of a
visit (its check-out), inside one (its check-in plus the visit's planned length, or now if
that is past), or *not started* (no check-in in the run yet, past its first visit's start:
now, from nowhere known). Then, visit by visit: the arrival is the later of the visit's
start, now, and the departure plus the travel from there (an overhead plus the straight-
line distance at the region's speed, both learnt, :class:`Travel`); the departure is the
arrival plus the visit's planned length. Before a run has started there is no basis, and
no prediction: never invented.

**The cause** of a predicted lateness: ``not_started`` for a run not started; otherwise the
same chain is run again as if the visit the worker is at had ended on time: if that arrival
is in time, the lateness is ``carried_from_previous_visit``, else it is the ``travel``. A
visit late only because the clock has passed its arrival (the worker should be there by
now and no check-in has come) has no cause from the run: a delay on the road, a phone
holding its events, or a worker gone elsewhere look the same.

Pure: no I/O; time is passed in.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import median

import msgspec

from geofence.reference import haversine_m

# A prediction moves by at least this much before it is sent again.
MOVE_S = 60.0
# Predictions are sent for the visit the worker goes to next, and for the visits whose late
# deadline is at most this far ahead: a late or missed takes the ETA held when it falls
# due, and further ahead a visit partition would hold a prediction per visit for nothing
# (the runs are swept each minute, so a visit is sent within a minute of coming this near).
SEND_AHEAD_S = 1800.0
# A transfer counts towards a region's speed only when it could not have been spent
# waiting: the worker arrived more than _PUNCTUAL_S after the next visit's start, went at
# least _MIN_TRANSFER_M, within these bounds.
_SPEED_BOUNDS_M_S = (0.5, 40.0)
_MIN_TRANSFER_M = 200.0
_PUNCTUAL_S = 300.0
_SAMPLES = 50  # the most recent transfers a region keeps
_TRUSTED = 20  # transfers a region needs before its own fit replaces the default
_CELL_DEG = 0.25  # a region: a cell of the grid, about 25 km
_MAX_OVERHEAD_S = 1800.0
_ALL = (1 << 30, 1 << 30)  # not a cell: all of them together


class Stop(msgspec.Struct, gc=False):
    """A visit in a worker's run (untracked by the collector: it holds no containers)."""

    visit_id: str
    partition: int  # the visit's partition, where its prediction goes
    start: float
    end: float
    lat: float
    lon: float
    late_at: float  # its late deadline
    check_in: float | None = None  # this worker's, device time
    check_out: float | None = None


@dataclass(frozen=True, slots=True)
class Prediction:
    visit_id: str
    partition: int
    worker_id: str
    expected_arrival: float | None  # None: no basis any more (the visit left the run)
    late_at: float
    cause: str | None  # when it is predicted late
    basis: tuple[str, str | None, float, float, float]  # (from, visit, free at, travel s, m/s)

    @property
    def late(self) -> bool:
        return self.expected_arrival is not None and self.expected_arrival > self.late_at


class Travel:
    """Each region's travel time between visits, learnt from its observed transfers (the
    time from a check-out to the same worker's next check-in, against the straight-line
    distance): ``overhead + metres / speed``. The overhead is what every transfer costs
    whatever its length (to the car, parking, to the door); without it a region's long
    transfers would be over-estimated and its short ones under-estimated. The line is a
    Theil-Sen fit of the region's recent transfers (the median of the pairwise slopes,
    then the median intercept), robust to the transfer that met a delay on the way. A
    region with too few transfers of its own takes the fit of all the partition's
    regions together, and the defaults until that has enough."""

    def __init__(self, default_m_s: float, default_overhead_s: float = 0.0) -> None:
        self.default = (default_overhead_s, default_m_s)
        # Per cell (and _ALL): recent transfers, and the fit (overhead s, m/s).
        self._seen: dict[tuple[int, int], deque[tuple[float, float]]] = {}
        self._fit: dict[tuple[int, int], tuple[float, float]] = {}

    @staticmethod
    def cell(lat: float, lon: float) -> tuple[int, int]:
        return math.floor(lat / _CELL_DEG), math.floor(lon / _CELL_DEG)

    def of(self, lat: float, lon: float) -> tuple[float, float]:
        """The region's (overhead s, m/s)."""
        fit = self._fit.get(self.cell(lat, lon))
        return fit if fit is not None else self._fit.get(_ALL, self.default)

    def seconds(self, a_lat: float, a_lon: float, b_lat: float, b_lon: float
                ) -> tuple[float, float]:
        """From a to b: (seconds, the m/s used), in b's region."""
        overhead, speed = self.of(b_lat, b_lon)
        return overhead + haversine_m(a_lat, a_lon, b_lat, b_lon) / speed, speed

    def observe(self, a: Stop, b: Stop, left: float, arrived: float) -> None:
        if arrived <= b.start + _PUNCTUAL_S or arrived <= left:
            # It may have been spent waiting for the visit's start: a carer who is not
            # behind comes within minutes of it, either side.
            return
        metres = haversine_m(a.lat, a.lon, b.lat, b.lon)
        if metres < _MIN_TRANSFER_M:
            return
        seconds = arrived - left
        if _SPEED_BOUNDS_M_S[0] <= metres / seconds <= _SPEED_BOUNDS_M_S[1]:
            for cell in (self.cell(b.lat, b.lon), _ALL):
                seen = self._seen.setdefault(cell, deque(maxlen=_SAMPLES))
                seen.append((metres, seconds))
                if len(seen) >= _TRUSTED:  # once a transfer, not once a prediction
                    fit = _theil_sen(seen)
                    if fit is not None:
                        self._fit[cell] = fit


def _theil_sen(seen: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """(overhead s, m/s) of the line through (metres, seconds), or None when the
    transfers do not give a sensible one (all of one length, or a pace out of bounds)."""
    pairs = list(seen)
    slopes = [(t2 - t1) / (d2 - d1) for i, (d1, t1) in enumerate(pairs)
              for d2, t2 in pairs[i + 1:] if abs(d2 - d1) >= _MIN_TRANSFER_M]
    if len(slopes) < _TRUSTED:
        return None
    pace = median(slopes)  # s/m
    if not 1 / _SPEED_BOUNDS_M_S[1] <= pace <= 1 / _SPEED_BOUNDS_M_S[0]:
        return None
    overhead = median(t - pace * d for d, t in pairs)
    return min(max(overhead, 0.0), _MAX_OVERHEAD_S), 1 / pace


@dataclass(slots=True)
class Run:
    stops: dict[str, Stop] = field(default_factory=dict)
    # Per visit, what was last sent: (arrival, cause, its partition, its late deadline).
    sent: dict[str, tuple[float, str | None, int, float]] = field(default_factory=dict)

    def ordered(self) -> list[Stop]:
        return sorted(self.stops.values(), key=lambda s: (s.start, s.visit_id))


class Runs:
    """The runs of one run partition's workers."""

    def __init__(self, travel: Travel) -> None:
        self.travel = travel
        self.runs: dict[str, Run] = {}

    # ---- facts ------------------------------------------------------------------------------

    def visit(self, stop: Stop, workers: Sequence[str], was: Sequence[str] = (),
              cancelled: bool = False, owns: Callable[[str], bool] | None = None
              ) -> list[str]:
        """A visit's roster record as it stands: it joins the runs of its ``workers`` (those
        this partition ``owns``, when given), keeping what they did there, and leaves the
        runs of the workers it ``was`` rostered to before and is not now (all of them once
        cancelled). The workers whose runs changed."""
        changed = []
        for worker in was:
            run = self.runs.get(worker)
            if run is not None and stop.visit_id in run.stops and (
                    cancelled or worker not in workers):
                del run.stops[stop.visit_id]
                changed.append(worker)
        if cancelled:
            return changed
        first = True
        for worker in workers:
            if owns is not None and not owns(worker):
                continue
            # Each worker's run its own stop: a double-up's workers check in and out apart.
            mine = stop if first else msgspec.structs.replace(stop)
            first = False
            run = self.runs.setdefault(worker, Run())
            held = run.stops.get(stop.visit_id)
            mine.check_in, mine.check_out = ((held.check_in, held.check_out)
                                             if held is not None else (None, None))
            run.stops[stop.visit_id] = mine
            changed.append(worker)
        return changed

    def event(self, worker: str, visit_id: str, type_: str, occurred: float) -> bool:
        """A check-in or check-out of a visit in the worker's run; False if it is not in
        it (an unrostered worker's, or a visit the run does not hold yet)."""
        run = self.runs.get(worker)
        stop = run.stops.get(visit_id) if run is not None else None
        if stop is None:
            return False
        if type_ == "check_in":
            if stop.check_in is None or occurred < stop.check_in:
                stop.check_in = occurred
                self._learn(run, stop)
        elif stop.check_out is None or occurred > stop.check_out:
            stop.check_out = occurred
        return True

    def _learn(self, run: Run, stop: Stop) -> None:
        before = [s for s in run.ordered() if s.start < stop.start and s.check_out is not None]
        if before:
            prev = before[-1]
            assert stop.check_in is not None and prev.check_out is not None
            self.travel.observe(prev, stop, prev.check_out, stop.check_in)

    def forget(self, until: float) -> None:
        """Drop the stops that ended before ``until``, and the runs left empty."""
        for worker in list(self.runs):
            run = self.runs[worker]
            for vid in [v for v, s in run.stops.items() if s.end < until]:
                del run.stops[vid]
                run.sent.pop(vid, None)
            if not run.stops:
                del self.runs[worker]

    # ---- predictions ------------------------------------------------------------------------

    def predict(self, worker: str, now: float) -> list[Prediction]:
        """Each visit of the run not reached yet: when the worker will arrive, from where
        they are now. Empty when the run has not started and is not due to have."""
        run = self.runs.get(worker)
        if run is None:
            return []
        stops = run.ordered()
        at = max((k for k, s in enumerate(stops) if s.check_in is not None), default=None)
        if at is None:
            if not stops or now < stops[0].late_at:
                # No basis yet: a carer comes within minutes of the first start, either
                # side; not started is the run whose first visit is late already.
                return []
            where, ahead = None, stops
            basis_from, free, ontime = "not_started", now, math.inf
        else:
            where, ahead = stops[at], stops[at + 1:]
            assert where.check_in is not None
            if where.check_out is not None:
                basis_from, free = "checked_out", where.check_out
            else:
                basis_from = "inside"
                free = max(where.check_in + (where.end - where.start), now)
            ontime = where.end
        out = []
        basis = basis_from
        for s in ahead:
            travel, speed = (self.travel.seconds(where.lat, where.lon, s.lat, s.lon)
                             if where is not None else (0.0, self.travel.of(s.lat, s.lon)[1]))
            arrival = max(s.start, now, free + travel)
            # The same chain had the visit the worker is at ended on time.
            ontime = max(s.start, ontime + travel)
            cause = None
            if free + travel > s.late_at:  # the chain says so, not only the clock
                cause = ("not_started" if basis_from == "not_started"
                         else "carried_from_previous_visit" if ontime <= s.late_at
                         else "travel")
            out.append(Prediction(s.visit_id, s.partition, worker, arrival, s.late_at, cause,
                                  (basis, where.visit_id if where is not None else None,
                                   free, round(travel, 1), round(speed, 2))))
            basis = "run"
            free = arrival + (s.end - s.start)
            ontime += s.end - s.start
            where = s
        return out

    def changed(self, worker: str, now: float) -> list[Prediction]:
        """The predictions of the worker's run to send (:data:`SEND_AHEAD_S`) that moved
        since they were last sent (by :data:`MOVE_S`, or in cause), and one without an
        arrival for each visit predicted before that has no basis now (it left the run, or
        the run moved past it)."""
        run = self.runs.get(worker)
        if run is None:
            return []
        out = []
        fresh = {p.visit_id: p for p in self.predict(worker, now)
                 if p.basis[0] != "run" or p.late_at - now <= SEND_AHEAD_S}
        for vid, p in fresh.items():
            last = run.sent.get(vid)
            assert p.expected_arrival is not None
            if (last is None or last[1] != p.cause
                    or abs(last[0] - p.expected_arrival) >= MOVE_S):
                run.sent[vid] = (p.expected_arrival, p.cause, p.partition, p.late_at)
                out.append(p)
        for vid in [v for v in run.sent if v not in fresh]:
            _, _, partition, late_at = run.sent.pop(vid)
            stop = run.stops.get(vid)
            if stop is None or stop.check_in is None:
                out.append(Prediction(vid, partition, worker, None, late_at, None,
                                      ("none", None, now, 0.0, 0.0)))
        return out
