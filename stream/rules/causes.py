"""Why a visit went late or missed: the ``cause`` on every ``late`` and ``missed``, from the
evidence, with that evidence, or ``unknown`` (docs/rules.md, "Causes"). Never assumed.

At the deadline, the first that the evidence shows:

- ``late_roster_change``: the visit was reassigned or moved less than
  :data:`LATE_CHANGE_S` before its start (when the change reached Kafka). The missed-target
  review in the care documents starts by comparing "planned staffing, actual staffing,
  late changes";
- the cause the worker's run gives, when its prediction explains the lateness
  (stream/rules/runs.py): ``carried_from_previous_visit``, ``travel`` or ``not_started``;
  and ``carried_from_previous_visit`` when the prediction found the worker inside their
  previous visit and, still there now, they cannot make it (the prediction may be up to a
  sweep old: the overrun that makes the visit late may be in its last minute);
- ``unknown``.

Later, ``phone_offline``: when the check-in that answers the escalation was made before the
deadline and reached Kafka more than :data:`OFFLINE_S` after it was made, the worker was
there and their phone held the event. The resolution says so, since only then does the
evidence exist; the escalation's last revision carries it.
"""

from __future__ import annotations

from typing import Any

from stream.rules.at_risk import expected
from stream.state.visit import VisitState
from stream.timeutil import format_instant

UNKNOWN = "unknown"
# A change to who or when closer to the start than this is a late one.
LATE_CHANGE_S = 3600.0
# An event that took longer than this to reach Kafka was held by its phone.
OFFLINE_S = 600.0


def at_deadline(vs: VisitState, now: float, late_at: float) -> dict[str, Any]:
    """The cause of a ``late`` or ``missed`` raised at ``now`` (the visit's late deadline
    ``late_at``), and its evidence."""
    v = vs.visit
    if vs.changed_at and v.start - vs.changed_at < LATE_CHANGE_S:
        return {"cause": "late_roster_change", "cause_evidence": {
            "change": vs.change, "changed_at": format_instant(vs.changed_at),
            "before_start_s": round(v.start - vs.changed_at, 1)}}
    found = expected(vs)
    if found is not None:
        p = found[1]
        if p.cause is not None:
            return {"cause": p.cause}  # its evidence is the ETA's basis
        source, _, free_at, travel_s, _ = p.basis
        if source == "inside" and now > free_at and now + travel_s > late_at:
            return {"cause": "carried_from_previous_visit"}
    return {"cause": UNKNOWN}


def on_arrival(vs: VisitState, deadline: float) -> dict[str, Any]:
    """``phone_offline`` when a check-in made by ``deadline`` was held by its phone;
    nothing otherwise (the cause stated at the deadline stands)."""
    held = [(w, m) for w, m in vs.checkins.items()
            if m.occurred <= deadline and m.received - m.occurred > OFFLINE_S]
    if not held:
        return {}
    worker, m = max(held, key=lambda wm: wm[1].received - wm[1].occurred)
    return {"cause": "phone_offline", "cause_evidence": {
        "worker_id": worker, "checked_in_at": format_instant(m.occurred),
        "delivered_at": format_instant(m.received),
        "delivery_delay_s": round(m.received - m.occurred, 1)}}
