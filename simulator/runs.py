"""The ground truth of worker runs: which visits were really late, which of those a perfect
predictor could have called at risk with :data:`LEAD_S` to spare, and when each worker
truly came, derived from the simulated facts (simulator/scenario.py), not from the
detector's code.

The graded visits have one rostered worker, are in the scoring window and not cancelled.
A visit is *really late* when its worker came after its late deadline, or never. Its
lateness is *carried* when the worker, leaving the run's previous visit when they truly
left and driving as they truly drove, could not have been in time (a delay met on the way
is not carried: nothing in the facts foretells it). It is *callable* with lead ``L`` when,
at ``late deadline - L``, what had reached Kafka of the previous visit already says so: its
check-out (the true departure), or its check-in with the worker still there (the planned
length, or that instant if later), plus the true drive.

The *cause* a graded visit's ``late`` should state, where the simulator injected one:
``phone_offline`` when the worker came in time and their phone delivered the check-in
after the late deadline; for a carried lateness, ``carried_from_previous_visit`` when
leaving the previous visit at its scheduled end would have been in time, else ``travel``;
``unknown`` for a worker held up on the way and nothing carried (nothing in the facts
says so until they come). A skipped visit has no injected cause and is not graded; the
simulator makes no late roster change (its changes come one to three hours ahead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from simulator.scenario import Scenario, VisitFact

LEAD_S = 600.0


@dataclass
class RunTruth:
    late_at: dict[str, float] = field(default_factory=dict)  # graded visit -> late deadline
    arrived: dict[str, float | None] = field(default_factory=dict)  # -> true arrival
    carried: list[str] = field(default_factory=list)  # really late and carried
    callable: list[str] = field(default_factory=list)  # ... and callable with LEAD_S
    causes: dict[str, str] = field(default_factory=dict)  # graded visit -> its late's cause

    def to_doc(self) -> dict[str, Any]:
        return {"late_at": self.late_at, "arrived": self.arrived, "carried": self.carried,
                "callable": self.callable, "causes": self.causes, "lead_s": LEAD_S}


def expect_runs(sc: Scenario, score_until: float) -> RunTruth:
    truth = RunTruth()
    start = sc.config.window[0]
    for vid, fact in sc.facts.items():
        workers = fact.doc["worker_ids"]
        late_at = fact.visit.start + fact.threshold("late_after_s")
        if (len(workers) != 1 or fact.cancelled_at is not None
                or not start <= late_at <= score_until or vid.endswith("-r")):
            continue
        truth.late_at[vid] = late_at
        worker = workers[0]
        came = None if fact.missed or worker not in fact.came else fact.came[worker][0]
        truth.arrived[vid] = came
        if came is not None and came <= late_at:
            if late_at < _delivered(fact) < math.inf:  # none accepted: a bad clock's
                truth.causes[vid] = "phone_offline"
            continue
        if came is None:
            continue
        if fact.en_route_delay and max(fact.visit.start, came - fact.en_route_delay) <= late_at:
            truth.causes[vid] = "unknown"  # in time but for the delay on the way
        if fact.leg is None:
            continue
        prev = sc.facts.get(fact.leg[0])
        if prev is None or worker not in prev.came:
            continue
        drive = fact.leg[1]
        if max(fact.visit.start, prev.came[worker][1] + drive) <= late_at:
            continue  # in time but for the delay on the way
        truth.carried.append(vid)
        # Carried when the previous visit ran past its end (or began late): leaving it on
        # time, the worker would have been in time; else the drive itself is too long.
        truth.causes[vid] = ("carried_from_previous_visit"
                             if max(fact.visit.start, prev.visit.end + drive) <= late_at
                             else "travel")
        if _callable(prev, worker, fact.visit.start, drive, late_at - LEAD_S, late_at):
            truth.callable.append(vid)
    return truth


def _callable(prev: VisitFact, worker: str, start: float, drive: float, at: float,
              late_at: float) -> bool:
    """Whether what had reached Kafka of the previous visit by ``at`` says the worker will
    be late."""
    received = {ev.type: ev.received for ev in prev.events
                if ev.worker == worker and ev.accepted}
    arrived, left = prev.came[worker]
    if received.get("check_out", math.inf) <= at:
        departure = left
    elif received.get("check_in", math.inf) <= at:
        departure = max(arrived + prev.visit.duration, at)
    else:
        return False
    return max(start, departure + drive) > late_at


def _delivered(fact: VisitFact) -> float:
    """When the visit's first accepted check-in reached Kafka, whoever made it (a
    replacement attends it too); infinity when none did."""
    return min((ev.received for ev in fact.events if ev.type == "check_in" and ev.accepted),
               default=math.inf)
