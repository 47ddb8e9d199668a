"""The ground truth: which escalations the monitor must raise, and their deadlines.

Derived from the simulated facts by the rules as docs/rules.md states them, independently of the
detector's code: what the monitor could know at each deadline is what had reached Kafka by
then. Times are read back from the messages as sent (millisecond RFC 3339), so the ledger and
the monitor do the same arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from geofence.kernels import ACCURACY_68_TO_95
from geofence.reference import haversine_m
from simulator.safeguarding import KIND as REVIEW
from simulator.safeguarding import expect_reviews
from simulator.scenario import RADIUS_M, EventFact, Scenario, VisitFact
from stream.timeutil import parse_instant


@dataclass(frozen=True, slots=True)
class Expected:
    escalation_id: str
    kind: str
    deadline: float
    scored: bool  # inside the scoring window (the tail after it is not judged)
    # When the monitor can first raise it: the deadline of a timer kind, or when the event
    # that makes it true reached Kafka (its case's deadlines count from then).
    base: float = 0.0


@dataclass
class Ledger:
    window_start: float
    window_end: float
    score_until: float
    speed: float
    expected: list[Expected]
    deadletters: dict[str, int]
    # What the cases must show, when a duty desk played (simulator/cases.py): to_doc().
    cases: dict[str, Any] | None = None
    # What the worker runs must show, when the workers predict (simulator/runs.py).
    runs: dict[str, Any] | None = None
    # The visits behind each safeguarding review expected (simulator/safeguarding.py).
    safeguarding: dict[str, list[str]] | None = None
    # What the visit records must say (simulator/records.py).
    records: dict[str, Any] | None = None
    # Visits no input attributes their check-in to (:func:`unattributable`), and their
    # clients: left unjudged, with what the monitor raises for them and the clients'
    # safeguarding reviews.
    unjudged: dict[str, list[str]] | None = None

    def to_doc(self) -> dict[str, Any]:
        return {"window_start": self.window_start, "window_end": self.window_end,
                "score_until": self.score_until, "speed": self.speed,
                "expected": [asdict(e) for e in self.expected],
                "deadletters": self.deadletters, "cases": self.cases, "runs": self.runs,
                "safeguarding": self.safeguarding, "records": self.records,
                "unjudged": self.unjudged}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Ledger:
        return cls(doc["window_start"], doc["window_end"], doc["score_until"], doc["speed"],
                   [Expected(**e) for e in doc["expected"]], dict(doc["deadletters"]),
                   doc.get("cases"), doc.get("runs"), doc.get("safeguarding"),
                   doc.get("records"), doc.get("unjudged"))

    def judged(self, escalation: dict[str, Any]) -> bool:
        """Whether a raised escalation is graded: not one of an unjudged visit's, nor a
        safeguarding review of an unjudged visit's client."""
        u = self.unjudged
        if not u:
            return True
        if escalation.get("kind") == REVIEW:
            return escalation.get("client_id") not in u["clients"]
        return escalation.get("visit_id") not in u["visits"]


def build_ledger(sc: Scenario, safeguarding: tuple[int, int, float] = (2, 3, 604800.0),
                 match_window_s: float = 7200.0) -> Ledger:
    """``safeguarding``: the workers' thresholds, (missed, late, window_s);
    ``match_window_s``: their ECM_MATCH_WINDOW_S."""
    start, end = sc.config.window
    # Events sent in the last guard band may not be processed before the run stops.
    score_until = end - 2 * sc.config.guard_s
    expected: list[Expected] = []
    dead: dict[str, int] = dict(sc.malformed)
    elsewhere = matched_elsewhere(sc, end, match_window_s)
    unjudged = unattributable(elsewhere)
    held = _held_elsewhere(elsewhere)
    for fact in sc.facts.values():
        sent = [e for e in fact.events if e.received <= end]
        for e in sent:
            if not e.accepted:
                dead[e.reject_reason or "?"] = dead.get(e.reject_reason or "?", 0) + 1
        judged = fact.visit.visit_id not in unjudged
        own = _visit_expectations(fact, [e for e in sent if e.accepted])
        kinds = {kind for kind, _, _ in own}
        for kind, deadline, base in held.get(fact.visit.visit_id, ()):
            if kind not in kinds:
                kinds.add(kind)
                own.append((kind, deadline, base))
        for kind, deadline, base in own:
            expected.append(Expected(f"{fact.visit.visit_id}:{kind}", kind, deadline,
                                     judged and start <= deadline <= score_until, base))
    for at, original in sc.duplicates:
        if at <= end:
            # A copy of a refused event is refused for the same reason.
            reason = "duplicate_event" if original.accepted else original.reject_reason or "?"
            dead[reason] = dead.get(reason, 0) + 1
    for u in sc.unscheduled:
        day = datetime.fromtimestamp(u.occurred, tz=UTC).strftime("%Y%m%d")
        deadline = u.received + sc.config.unscheduled_grace_s
        eid = f"adhoc:{u.doc['client_id']}:{u.worker}:{day}:unscheduled"
        expected.append(Expected(eid, "unscheduled", deadline, start <= deadline <= score_until,
                                 deadline))
    reviews = expect_reviews(sc, [(e.escalation_id.rsplit(":", 1)[0], e.kind, e.deadline,
                                   e.base) for e in expected if e.kind in ("late", "missed")],
                             *safeguarding)
    clients = sorted({sc.facts[vid].doc["client_id"] for vid in unjudged})
    for r in reviews:
        judged = r.client_id not in clients
        expected.append(Expected(r.escalation_id, REVIEW, r.deadline,
                                 judged and start <= r.deadline <= score_until, r.base))
    for reason in [r for r, n in dead.items() if n == 0]:
        del dead[reason]
    return Ledger(start, end, score_until, sc.config.speed, expected, dead,
                  safeguarding={r.escalation_id: list(r.visits) for r in reviews},
                  unjudged={"visits": sorted(unjudged), "clients": clients})


# Check-ins naming no visit that go by nearness to another visit than their own
# (:func:`matched_elsewhere`): (check-in, its visit, the visit it goes to, the check-out naming its
# visit or None).
Elsewhere = list[tuple[EventFact, VisitFact, VisitFact, EventFact | None]]


def unattributable(elsewhere: Elsewhere) -> set[str]:
    """The visits whose check-in no input attributes (docs/rules.md, "Matching an event to
    its visit"): a check-in that names no visit goes to the client's visit nearest in time;
    where that is another visit than the one the worker came for, only a check-out naming
    the right visit takes it back. Without one, both visits are left unjudged: nothing the
    monitor reads tells which visit the worker came for."""
    out: set[str] = set()
    for _, fact, other, back in elsewhere:
        if back is None:
            out.update((fact.visit.visit_id, other.visit.visit_id))
    return out


def _held_elsewhere(elsewhere: Elsewhere) -> dict[str, list[tuple[str, float, float]]]:
    """What the visit that held another's check-in, until a check-out naming the right
    visit took it back, raises meanwhile: ``visit id -> [(kind, deadline, base)]``. By what
    had reached Kafka it was that visit's check-in: its place is judged against that
    visit, and that visit's no-check-out deadline passes with it checked in."""
    out: dict[str, list[tuple[str, float, float]]] = {}
    for e, _, other, back in elsewhere:
        if back is None:
            continue
        taken = back.received
        cancelled = other.cancelled_at if other.cancelled_at is not None else math.inf
        if e.received >= cancelled:
            continue
        found = out.setdefault(other.visit.visit_id, [])
        t = _stamp(e)
        if e.worker not in other.doc["worker_ids"]:
            found.append(("wrong_worker", t, e.received))
        verdict = _location(other, e)
        if verdict:
            found.append((verdict, t, e.received))
        x = parse_instant(other.doc["scheduled_end"])
        assert x is not None
        deadline = x + other.threshold("no_checkout_after_s")
        if e.received <= deadline < min(taken, cancelled):
            found.append(("no_check_out", deadline, deadline))
    return out


def matched_elsewhere(sc: Scenario, end: float, window_s: float) -> Elsewhere:
    """Check-ins naming no visit that go by nearness to another visit than their own."""
    by_client: dict[str, list[VisitFact]] = {}
    for fact in sc.facts.values():
        by_client.setdefault(fact.doc["client_id"], []).append(fact)
    out: Elsewhere = []
    for fact in sc.facts.values():
        vid = fact.visit.visit_id
        for e in fact.events:
            if (e.type != "check_in" or not e.accepted or e.received > end
                    or "visit_id" in e.doc):
                continue
            other = _nearest(by_client[fact.doc["client_id"]], e, window_s)
            if other is None or other is fact:
                continue
            back = next((o for o in fact.events if o.type == "check_out"
                         and o.worker == e.worker and o.accepted and o.received <= end
                         and o.doc.get("visit_id") == vid), None)
            out.append((e, fact, other, back))
    return out


def _nearest(facts: list[VisitFact], e: EventFact, window_s: float) -> VisitFact | None:
    """The client's visit a check-in naming none is matched to: rostered to its worker
    first, then one the worker has not checked into and out of already, then the smallest
    gap to the window, then nearest the start; only visits whose window widened by
    ``window_s`` holds it, and not cancelled by the time it came."""
    t = _stamp(e)
    best: tuple[bool, bool, float, float] | None = None
    chosen = None
    for f in facts:
        if f.cancelled_at is not None and f.cancelled_at <= e.received:
            continue
        s = parse_instant(f.doc["scheduled_start"])
        x = parse_instant(f.doc["scheduled_end"])
        assert s is not None and x is not None
        if not s - window_s <= t <= x + window_s:
            continue
        mine = [o for o in f.events if o.worker == e.worker and o.accepted
                and o.received <= e.received]
        closed = (any(o.type == "check_in" for o in mine)
                  and any(o.type == "check_out" and _stamp(o) <= t for o in mine))
        key = (e.worker not in f.doc["worker_ids"], closed, max(s - t, 0.0, t - x),
               abs(t - s))
        if best is None or key < best:
            best, chosen = key, f
    return chosen


def _stamp(e: EventFact) -> float:
    t = parse_instant(e.doc["occurred_at"])
    assert t is not None
    return t


def _visit_expectations(fact: VisitFact,
                        events: list[EventFact]) -> list[tuple[str, float, float]]:
    """``(kind, deadline, base)`` for each escalation the visit must raise."""
    workers = fact.doc["worker_ids"]
    start = parse_instant(fact.doc["scheduled_start"])
    end = parse_instant(fact.doc["scheduled_end"])
    assert start is not None and end is not None
    cancelled = fact.cancelled_at if fact.cancelled_at is not None else math.inf
    ins = [e for e in events if e.type == "check_in"]
    outs = [e for e in events if e.type == "check_out"]
    out: list[tuple[str, float, float]] = []

    # late / missed: not attended by the deadline, as far as Kafka knew by then.
    for kind, name in (("late", "late_after_s"), ("missed", "missed_after_s")):
        deadline = start + fact.threshold(name)
        if deadline >= cancelled:
            continue
        attended = {e.worker for e in ins if e.received <= deadline and _stamp(e) <= deadline}
        if len(attended) < len(workers):
            out.append((kind, deadline, deadline))

    # no_check_out: somebody in, not everybody out, when the deadline came.
    deadline = end + fact.threshold("no_checkout_after_s")
    if deadline < cancelled:
        in_by = {e.worker for e in ins if e.received <= deadline}
        out_by = {e.worker for e in outs if e.received <= deadline}
        if in_by - out_by:
            out.append(("no_check_out", deadline, deadline))

    # Event rules, in the order the monitor receives the events.
    first: dict[str, tuple[float, float]] = {}  # kind -> (deadline, when it reached Kafka)
    held_in: dict[str, float] = {}
    held_out: dict[str, float] = {}
    for e in sorted(events, key=lambda e: e.received):
        if e.received >= cancelled:
            continue
        t = _stamp(e)
        if e.type == "check_in" and e.worker not in workers:
            first.setdefault("wrong_worker", (t, e.received))
        verdict = _location(fact, e)
        if verdict:
            first.setdefault(verdict, (t, e.received))
        if e.type == "check_in":
            held_in[e.worker] = min(t, held_in.get(e.worker, math.inf))
        else:
            held_out.setdefault(e.worker, t)
        w = e.worker
        if w in held_in and w in held_out and held_out[w] >= held_in[w]:
            scheduled = end - start
            threshold = fact.threshold("short_long_after_s")
            actual = held_out[w] - held_in[w]
            if actual <= scheduled - threshold:
                first.setdefault("shortened", (held_out[w], e.received))
            elif actual >= scheduled + threshold:
                first.setdefault("extended", (held_in[w] + scheduled + threshold, e.received))
    out.extend((kind, t, base) for kind, (t, base) in first.items())
    return out


def _location(fact: VisitFact, e: EventFact) -> str | None:
    doc = e.doc
    method = doc["method"]
    if method == "gps":
        loc = fact.doc["location"]
        d = haversine_m(doc["lat"], doc["lon"], loc["lat"], loc["lon"]) - RADIUS_M
        margin = ACCURACY_68_TO_95 * doc["accuracy_m"]
        if d > margin:
            return "location_mismatch"
        if d >= -margin:
            return "location_unverified"
        return None
    if method == "telephony":
        digits = "".join(ch for ch in doc["caller_number"] if ch.isdigit())
        known = {"".join(ch for ch in p if ch.isdigit()) for p in fact.doc["client_phones"]}
        return None if digits in known else "location_unverified"
    if method in ("nfc", "qr"):
        return None if doc["tag_id"] in fact.doc["nfc_tags"] else "location_unverified"
    return None

