"""A day's roster: care packages turned into feasible runs of consecutive visits.

Each client has visits in some of the day's peaks (morning, lunch, tea, bed). Visits are
given to the workers of the client's town, greedily in order of preferred time: the worker
who can get there soonest (free at the end of their last visit plus the drive) gets it, and
the scheduled start is when they can be there. So the roster is feasible as planned, and
lateness comes from what happens on the day.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from simulator.region import Client, Region, distance_m

# Peaks: (earliest start, latest preferred start) in hours, and visit lengths in minutes.
PEAKS = (
    ("morning", 7.0, 9.5, (30, 45, 60)),
    ("lunch", 12.0, 13.5, (15, 30)),
    ("tea", 16.5, 18.0, (15, 30)),
    ("bed", 19.5, 21.5, (15, 30)),
)
# Average speed between homes and the time to park and walk in.
DRIVE_M_PER_S = 30_000 / 3600
PARK_S = 180.0
# Slack a rota planner leaves between visits, so one late start need not spoil a run.
SLACK_S = 600.0
# How many of a town's soonest-free workers are considered for each visit.
_CANDIDATES = 8


@dataclass
class Visit:
    visit_id: str
    client: Client
    workers: list[str]
    start: float
    end: float
    time_critical: bool
    peak: str
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Roster:
    visits: list[Visit]
    runs: dict[str, list[Visit]]  # worker id -> visits in order


def travel_s(a: Client | None, b: Client) -> float:
    if a is None:
        return PARK_S
    return distance_m(a.lat, a.lon, b.lat, b.lon) / DRIVE_M_PER_S + PARK_S


def build_roster(rng: random.Random, region: Region, day_start: float,
                 visits_per_client: float, double_up_rate: float, prefix: str = "") -> Roster:
    """Plan the day that starts at ``day_start`` (epoch seconds, local midnight); its visit
    ids begin with ``prefix`` (the days of a week apart)."""
    requests = []
    for c in region.clients:
        n = min(len(PEAKS), max(1, round(rng.gauss(visits_per_client, 0.8))))
        peaks = sorted(rng.sample(range(len(PEAKS)), n)) if n < len(PEAKS) else range(n)
        if 0 not in peaks and rng.random() < 0.7:
            peaks = [0, *list(peaks)[1:]]  # most packages start with a morning call
        double = rng.random() < double_up_rate
        for p in peaks:
            _, lo, hi, lengths = PEAKS[p]
            preferred = day_start + rng.uniform(lo, hi) * 3600
            minutes = rng.choice(lengths)
            requests.append((preferred, c, p, minutes, double, rng.random() < 0.25))
    requests.sort(key=lambda r: r[0])
    by_town = region.workers_by_town()
    # Per town: heap of (free_at, tiebreak, worker_id); last client per worker.
    free: dict[int, list[tuple[float, int, str]]] = {
        t: [(day_start, i, w.worker_id) for i, w in enumerate(ws)] for t, ws in by_town.items()}
    for heap in free.values():
        heapq.heapify(heap)
    last: dict[str, Client | None] = {w.worker_id: None for w in region.workers}
    runs: dict[str, list[Visit]] = {w.worker_id: [] for w in region.workers}
    visits = []
    for n, (preferred, c, p, minutes, double, critical) in enumerate(requests):
        heap = free[c.town]
        need = 2 if double and len(heap) >= 2 else 1
        popped = [heapq.heappop(heap) for _ in range(min(_CANDIDATES, len(heap)))]
        ranked = sorted(popped, key=lambda e: max(e[0] + travel_s(last[e[2]], c) + SLACK_S,
                                                   preferred))
        chosen = ranked[:need]
        start = max(max(e[0] + travel_s(last[e[2]], c) + SLACK_S, preferred) for e in chosen)
        start = float(round(start / 60) * 60)  # rosters are in whole minutes
        end = start + minutes * 60.0
        v = Visit(f"{prefix}v{n:07d}", c, [e[2] for e in chosen], start, end, critical, PEAKS[p][0])
        visits.append(v)
        for e in chosen:
            runs[e[2]].append(v)
            last[e[2]] = c
            heapq.heappush(heap, (end, e[1], e[2]))
        for e in ranked[need:]:
            heapq.heappush(heap, e)
    return Roster(visits, runs)
