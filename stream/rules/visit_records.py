"""Visit records: what became of each visit, once it is settled, for the record the care
documents ask for and the management report (``ecm.visits``, ``visit.schema.json``).

The late and missed visits policy (``shared/seeds/ecm-late-and-missed-visits-policy.txt``)
asks that "the late visit will be recorded, showing: Rostered Care Worker, Substitute Care
Worker, where applicable, Visit duration, Scheduled visit time, Time delayed, ... Reason for
delay, Action to be taken" (5.5), and the missed visit likewise (5.8), indexed "on each of:
reason, care worker, service user" to find trends (5.6, 5.10). A record holds that, and what
the monitor said of the visit: every escalation and its case's outcome, the cause, and the
classification (stream/rules/classification.py).

A visit is *settled* when everybody who came has checked in and out, when its no-check-out
deadline passes (missed, or attended without a check-out), or when it is cancelled. Its
record is written then, and again whenever what it says changes: a late check-in or
check-out, a case's action, a resolution. The last record of a visit wins. A record is a
pure function of what the partition holds, so a replay writes the same record again.
"""

from __future__ import annotations

from typing import Any

from stream.contract import SCHEMA_VERSION
from stream.contract.records import (
    FINAL_STATUSES,
    Escalation,
    RosterChange,
    VisitRecord,
    WorkerVisit,
)
from stream.rules import classification
from stream.rules.book import EscalationBook, escalation_id
from stream.rules.causes import LATE_CHANGE_S
from stream.rules.scoring import KINDS
from stream.state.visit import Mark, VisitState, _OneMark
from stream.timeutil import format_instant

# An extended visit: "15 minutes or more past the agreed end time" (the policy, 6.1).
EXTENDED_S = 900.0

_LOCATION = (("location_mismatch", "mismatch"), ("location_unverified", "unverified"))

# Whether a quiet visit's record is built by :func:`_quiet`; the full build gives the same
# record (tests/unit/stream/rules/test_visit_records.py holds them equal).
FAST = True


def outcome(vs: VisitState, now: float, no_check_out_at: float) -> str | None:
    """The visit's outcome if it is settled by ``now``, else None."""
    if vs.visit.cancelled:
        return "cancelled"
    ins, outs = vs.checkins, vs.checkouts
    if type(ins) is _OneMark and type(outs) is _OneMark and ins.worker == outs.worker:
        return "attended"  # as a rule: one worker, in and out
    came = len(ins) or len(outs)
    if came and _complete(ins, outs):
        return "attended"
    if now < no_check_out_at:
        return None
    return "attended_no_check_out" if came else "missed"


def settled_early(vs: VisitState) -> bool:
    """Whether the visit was settled before its no-check-out deadline: cancelled, or
    attended and checked out (its record was written then)."""
    ins, outs = vs.checkins, vs.checkouts
    return vs.visit.cancelled or (bool(len(ins) or len(outs)) and _complete(ins, outs))


def _complete(ins: Any, outs: Any) -> bool:
    """Everybody who came checked in and out."""
    return len(ins) == len(outs) and all(w in outs for w in ins)


def build(vs: VisitState, settled: str, book: EscalationBook,
          deadlines: tuple[float, float, float, float], now: float) -> VisitRecord:
    """The record of a settled visit (``settled``: its :func:`outcome`)."""
    v = vs.visit
    ins, outs = vs.checkins, vs.checkouts
    if (FAST and settled == "attended" and type(ins) is _OneMark and type(outs) is _OneMark
            and v.visit_id not in book.per_visit and not vs.changed_at
            and len(v.worker_ids) == 1 and ins.worker == outs.worker == v.worker_ids[0]):
        return _quiet(vs, ins.mark, outs.mark, deadlines, now)
    return _full(vs, settled, book, deadlines, now)


def _quiet(vs: VisitState, i: Mark, o: Mark, deadlines: tuple[float, float, float, float],
           now: float) -> VisitRecord:
    """The record of the common visit, in the fewest steps: its rostered worker alone came,
    checked in and out, and nothing was raised or changed (so the location was verified)."""
    v = vs.visit
    arrived = i.occurred
    timeliness = _timeliness(arrived, deadlines)
    stay = o.occurred - arrived
    no_access = 0.0 <= stay < classification.NO_ACCESS_S
    failed = timeliness != "on_time" or no_access
    checked_in = format_instant(arrived)
    return VisitRecord(
        schema_version=SCHEMA_VERSION, visit_id=v.visit_id, client_id=v.client_id,
        contract_id=v.contract_id, settled_at=format_instant(now),
        outcome="attended", timeliness=timeliness,
        scheduled_start=format_instant(v.start), scheduled_end=format_instant(v.end),
        scheduled_duration_s=round(v.end - v.start, 3),
        rostered_worker_ids=tuple(v.worker_ids), roster_changes=(),
        workers=(WorkerVisit(worker_id=v.worker_ids[0], role="rostered",
                             checked_in_at=checked_in, check_in_method=i.method,
                             checked_out_at=format_instant(o.occurred),
                             check_out_method=o.method, duration_s=round(stay, 3)),),
        short_staffed=False, arrived_at=checked_in,
        delayed_s=round(max(0.0, arrived - v.start), 3),
        actual_duration_s=round(stay, 3), extended=o.occurred - v.end >= EXTENDED_S,
        location="verified", escalations=(), cause=None,
        contactability=("someone_home" if i.method == "telephony"
                        or o.method == "telephony" else "unknown"),
        classification=(_UNKNOWN_NO_ACCESS if no_access else _UNKNOWN_REVIEW) if failed
        else _DELIVERED)


_DELIVERED = classification.classify(changes=(), cause=None, timeliness="on_time",
                                     delivered=True, declined=False, no_access=False)
_UNKNOWN_REVIEW = classification.classify(changes=(), cause=None, timeliness="late",
                                          delivered=True, declined=False, no_access=False)
_UNKNOWN_NO_ACCESS = classification.classify(changes=(), cause=None, timeliness="on_time",
                                             delivered=True, declined=False, no_access=True)


def _full(vs: VisitState, settled: str, book: EscalationBook,
          deadlines: tuple[float, float, float, float], now: float) -> VisitRecord:
    v = vs.visit
    vid = v.visit_id
    records = _escalations(book, vid)
    ins, outs = vs.checkins, vs.checkouts
    rostered = v.worker_ids
    workers = []
    for w in sorted(set(ins) | set(outs), key=lambda w: (ins[w].occurred if w in ins
                                                          else outs[w].occurred, w)):
        i, o = ins.get(w), outs.get(w)
        workers.append(WorkerVisit(
            worker_id=w, role="rostered" if w in rostered else "substitute",
            checked_in_at=None if i is None else format_instant(i.occurred),
            check_in_method=None if i is None else i.method,
            checked_out_at=None if o is None else format_instant(o.occurred),
            check_out_method=None if o is None else o.method,
            duration_s=(round(o.occurred - i.occurred, 3) if i is not None and o is not None
                        else None)))
    arrived = vs.arrival()
    if arrived is None and len(ins):
        arrived = max(m.occurred for m in ins.values())  # short-staffed: the last who came
    complete = bool(len(ins)) and _complete(ins, outs)
    first_in = min((m.occurred for m in ins.values()), default=None)
    last_out = max((m.occurred for m in outs.values()), default=None)
    kinds = {r.kind: r for r in records}
    if v.cancelled:
        timeliness = ("missed" if "missed" in kinds else "late" if "late" in kinds
                      else "cancelled")
    elif arrived is None:
        timeliness = "missed"
    else:
        timeliness = _timeliness(arrived, deadlines)
    location = None
    if len(ins):
        location = next((word for kind, word in _LOCATION if kind in kinds), "verified")
    failure = kinds.get("missed") or kinds.get("late")
    cause = None if failure is None else failure.evidence.get("cause")
    changes = _changes(vs)
    short_staffed = len(ins) < len(set(rostered)) and settled != "cancelled"
    delivered = (settled == "attended" and not short_staffed and location == "verified"
                 and all(w.role == "rostered" for w in workers) and "shortened" not in kinds)
    return VisitRecord(
        schema_version=SCHEMA_VERSION, visit_id=vid, client_id=v.client_id,
        contract_id=v.contract_id, settled_at=format_instant(now),
        outcome=settled, timeliness=timeliness,
        scheduled_start=format_instant(v.start), scheduled_end=format_instant(v.end),
        scheduled_duration_s=round(v.end - v.start, 3),
        rostered_worker_ids=tuple(rostered), roster_changes=changes,
        workers=tuple(workers), short_staffed=short_staffed,
        arrived_at=None if arrived is None else format_instant(arrived),
        delayed_s=None if arrived is None else round(max(0.0, arrived - v.start), 3),
        actual_duration_s=(round(last_out - first_in, 3) if complete and first_in is not None
                           and last_out is not None else None),
        extended=complete and last_out is not None and last_out - v.end >= EXTENDED_S,
        location=location,
        escalations=tuple(_summary(r) for r in records),
        cause=cause,
        contactability=_contactability(vs, records),
        classification=classification.classify(
            changes=changes, cause=cause, timeliness=timeliness, delivered=delivered,
            declined=any(r.case.closure is not None
                         and r.case.closure.get("final_outcome_code") == "client_declined"
                         for r in records if r.kind in ("late", "missed")),
            no_access=_no_access(vs, location)))


def _timeliness(arrived: float, deadlines: tuple[float, float, float, float]) -> str:
    """By the device's time of the arrival: within the late threshold, the missed one, or
    after it (the policy, 5.1: a visit running over its missed threshold late is missed)."""
    return ("on_time" if arrived <= deadlines[0] else "late" if arrived <= deadlines[1]
            else "missed")


def _escalations(book: EscalationBook, vid: str) -> list[Escalation]:
    if vid not in book.per_visit:
        return []
    held = book.records
    return [r for r in (held.get(escalation_id(vid, k)) for k in KINDS) if r is not None]


def _changes(vs: VisitState) -> tuple[RosterChange, ...]:
    v = vs.visit
    out = []
    for change, at in ((vs.change, vs.changed_at), ("cancelled", vs.cancelled_at)):
        if change and at:
            before = v.start - at
            out.append(RosterChange(change=change, at=format_instant(at),
                                    before_start_s=round(before, 3),
                                    late=before < LATE_CHANGE_S))
    return tuple(out)


def _summary(r: Escalation) -> dict[str, Any]:
    s: dict[str, Any] = {"escalation_id": r.escalation_id, "kind": r.kind,
                         "priority": r.priority, "status": r.status, "level": r.level,
                         "detected_at": r.detected_at, "breaches": len(r.breaches)}
    if r.resolved_at is not None:
        s["resolved_at"] = r.resolved_at
        s["resolution"] = r.resolution
    cause = r.evidence.get("cause")
    if cause is not None:
        s["cause"] = cause
    case = r.case
    if case.owner is not None:
        s["owner"] = case.owner.get("owner_id")
    if case.pathway is not None:
        s["pathway"] = case.pathway.get("recovery_action_code")
    if case.closure is not None:
        s["final_outcome_code"] = case.closure.get("final_outcome_code")
        if r.status in FINAL_STATUSES:
            s["closed_at"] = case.closure.get("received")
    return s


def _contactability(vs: VisitState, records: list[Escalation]) -> str:
    """``someone_home`` when a check-in or check-out was a call from a number the roster
    gives for the home (a landline call from the home means someone was there), and no
    call came from a number it does not give (the evidence would disagree)."""
    if any(r.kind == "location_unverified" and r.evidence.get("reason") == "caller_not_on_roster"
           for r in records):
        return "unknown"
    for marks in (vs.checkins, vs.checkouts):
        for m in marks.values():
            if m.method == "telephony":
                return "someone_home"
    return "unknown"


def _no_access(vs: VisitState, location: str | None) -> bool:
    """A worker checked in at the home and left within :data:`classification.NO_ACCESS_S`:
    as a rule, nobody let them in."""
    if location != "verified":
        return False
    outs = vs.checkouts
    return any(w in outs and 0.0 <= outs[w].occurred - m.occurred < classification.NO_ACCESS_S
               for w, m in vs.checkins.items())
