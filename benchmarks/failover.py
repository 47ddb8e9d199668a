"""The fail-over delay a SIGKILL adds to the escalations, measured from what was published.

Definitions (all in wall seconds; simulated instants are turned into wall instants with the
run's :class:`~stream.clock.ScaledClock`, the one the workers ran on):

* An escalation's **deadline** ``D`` is ``clock.wall_at(deadline)`` of its first ``open``
  record; its **publication** ``P`` is that record's Kafka timestamp (CreateTime, stamped by
  the worker's producer when it sent it), or ``clock.wall_at(detected_at)`` when the broker
  gives none. Its **lateness** is ``L = P - D``.
* Only the timer kinds count (``late``, ``missed``, ``no_check_out``, ``unscheduled``), and
  only escalations the ledger expects inside the scoring window: their deadline is a timer
  the sweep fires, so ``L`` is the monitor's own delay. An event kind's "deadline" is the
  event's stamp, and its lateness is mostly the phone's upload delay.
* An escalation is **overdue** when ``L > OVERDUE_S`` (2 s: the detection promise the sweep
  interval is sized for, stream/settings.py).
* Kill ``k`` at wall instant ``K_k``; its **span** is ``[K_k, K_{k+1})`` (the last one's runs
  to the end of the day). The rotation kills again only once every worker is back and
  ready, so a kill's disruption ends inside its span.
* A kill's **fail-over delay** is ``F_k = max(P) - K_k`` over the overdue escalations whose
  deadline falls in its span, 0 when none is overdue: from the kill to the last overdue
  escalation it caused being published. Consumer-group liveness bounds it: a dead worker's
  partitions move after ``ECM_SESSION_TIMEOUT_S``, so ``F_k / (2 * session_timeout_s)``
  (the **ratio**) above 1 is a fail-over slower than the design allows. A kill is
  **overlapped** when one of those escalations was published only after the next kill: the
  next kill's fail-over is then part of its figure, and the kills not overlapped are
  summarised apart (``failover_not_overlapped``).
* Lateness is summarised (p50/p99/max) for deadlines **in kill windows**, ``[K_k, K_k + 2 *
  session_timeout_s)`` for some ``k``, and for those **outside** every window: the first
  shows what a kill costs, the second what the monitor does undisturbed (or a fail-over
  that outlasted its window).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from simulator.ledger import Ledger
from simulator.score import read_stamped
from stream.clock import ScaledClock
from stream.contract.records import lifecycle
from stream.settings import Settings
from stream.timeutil import parse_instant

TIMED_KINDS = ("late", "missed", "no_check_out", "unscheduled")
OVERDUE_S = 2.0


@dataclass(frozen=True)
class Published:
    """One record of a topic and the wall instant the broker stamped it with (None: none)."""

    doc: dict[str, Any]
    timestamp: float | None


def read_published(settings: Settings, topic: str) -> list[Published]:
    """Every record of a topic with its Kafka timestamp."""
    return [Published(doc, t) for doc, t in read_stamped(settings, topic)]


def lateness(published: Sequence[Published], ledger: Ledger,
             clock: ScaledClock) -> list[tuple[float, float]]:
    """(D, P) in wall seconds of each expected, raised timer escalation: its first open."""
    due = {e.escalation_id: e for e in ledger.expected
           if e.scored and e.kind in TIMED_KINDS}
    seen: set[str] = set()
    out = []
    for p in published:
        eid = p.doc.get("escalation_id")
        if lifecycle(p.doc) != "open" or eid not in due or eid in seen:
            continue
        seen.add(eid)
        deadline = parse_instant(p.doc["deadline"])
        at = p.timestamp
        if at is None:
            detected = parse_instant(p.doc["detected_at"])
            at = None if detected is None else clock.wall_at(detected)
        if deadline is not None and at is not None:
            out.append((clock.wall_at(deadline), at))
    return sorted(out)


def measure(published: Sequence[Published], ledger: Ledger, clock: ScaledClock,
            kills: Sequence[float], session_timeout_s: float) -> dict[str, Any]:
    """The fail-over delays of ``kills`` (wall instants, in order), as the module says."""
    pairs = lateness(published, ledger, clock)
    bound = 2 * session_timeout_s
    per_kill = []
    for i, k in enumerate(kills):
        until = kills[i + 1] if i + 1 < len(kills) else float("inf")
        span = [(d, p) for d, p in pairs if k <= d < until]
        overdue = [(d, p) for d, p in span if p - d > OVERDUE_S]
        f = max(p for _, p in overdue) - k if overdue else 0.0
        per_kill.append({"kill": i, "failover_s": round(f, 2), "ratio": round(f / bound, 2),
                         # Published only after the next kill: that kill's fail-over is in
                         # this one's figure too.
                         "overlapped": any(p >= until for _, p in overdue),
                         "deadlines": len(span), "overdue": len(overdue),
                         "worst_lateness_s": round(max((p - d for d, p in span),
                                                       default=0.0), 2)})
    inside, outside = [], []
    for d, p in pairs:
        i = bisect.bisect_right(kills, d) - 1
        (inside if i >= 0 and d < kills[i] + bound else outside).append(p - d)
    delays = summary([k["failover_s"] for k in per_kill])
    alone = summary([k["failover_s"] for k in per_kill if not k["overlapped"]])
    return {"session_timeout_s": session_timeout_s, "bound_s": bound,
            "overdue_after_s": OVERDUE_S, "kinds": list(TIMED_KINDS),
            "timestamps": "kafka" if all(p.timestamp is not None for p in published)
            else "detected_at where kafka gave none",
            "failover": {**delays, **{f"ratio_{q}": _ratio(delays[q], bound)
                                      for q in ("p50", "p99", "max")},
                         "over_bound": sum(1 for k in per_kill if k["failover_s"] > bound)},
            "failover_not_overlapped": {**alone, **{f"ratio_{q}": _ratio(alone[q], bound)
                                                    for q in ("p50", "p99", "max")}},
            "lateness_in_kill_windows": summary(inside),
            "lateness_outside": summary(outside),
            "kills": per_kill}


def summary(values: Sequence[float]) -> dict[str, Any]:
    """n, p50, p99 and max (nearest rank, as the scorer's percentiles), in seconds."""
    s = sorted(values)

    def q(x: float) -> float | None:
        return round(s[min(len(s) - 1, max(0, round(x * (len(s) - 1))))], 2) if s else None

    return {"n": len(s), "p50": q(0.5), "p99": q(0.99), "max": q(1.0)}


def _ratio(v: float | None, bound: float) -> float | None:
    return None if v is None else round(v / bound, 2)
