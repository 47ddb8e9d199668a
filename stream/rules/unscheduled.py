"""Unscheduled: a check-in or check-out at a client with no scheduled visit that matches it.

An event that matches no visit waits ``ECM_UNSCHEDULED_GRACE_S`` for a roster record that
may still come (stream/rules/matching.py); when its grace runs out and it named no visit,
it is an unscheduled visit: one escalation per client, worker and UTC day, whose id is
``adhoc:<client>:<worker>:<day>``. (An event that named a visit that never came is
dead-lettered as ``unknown_visit`` instead.) The EVV aggregators call this "Unscheduled
Event" and "Extraneous Calls".
"""

from __future__ import annotations

from datetime import UTC, datetime

from stream.contract import Event
from stream.contract.records import Escalation
from stream.rules.book import EscalationBook, escalation_id
from stream.rules.scoring import assess
from stream.rules.timers import TimerKind, Timers
from stream.settings import Settings

ADHOC_PREFIX = "adhoc:"


def adhoc_visit_id(event: Event) -> str:
    """The id given to an unscheduled visit: one per client, worker and UTC day."""
    day = datetime.fromtimestamp(event.occurred_at, tz=UTC).strftime("%Y%m%d")
    return f"{ADHOC_PREFIX}{event.client_id}:{event.worker_id}:{day}"


def adhoc_day_end(visit_id: str) -> float | None:
    """The end of the UTC day an unscheduled visit's id names, or None for another id."""
    if not visit_id.startswith(ADHOC_PREFIX):
        return None
    try:
        day = datetime.strptime(visit_id[-8:], "%Y%m%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return day.timestamp() + 86400.0


class Unscheduled:
    def __init__(self, settings: Settings, book: EscalationBook, timers: Timers) -> None:
        self.book = book
        self.timers = timers
        self.grace_s = settings.unscheduled_grace_s
        self.max_event_age_s = settings.max_event_age_s

    def judge(self, event: Event, now: float, received: float) -> list[Escalation]:
        """An event that named no visit waited out its grace without one."""
        vid = adhoc_visit_id(event)
        records = self.book.open_record(
            escalation_id(vid, "unscheduled"), "unscheduled", received + self.grace_s, now,
            {"event_id": event.event_id, "event_type": event.type, "method": event.method,
             "occurred_at": event.occurred_at, "worker_id": event.worker_id},
            assess("unscheduled", "medium"),
            visit_id=vid, client_id=event.client_id, worker_ids=[event.worker_id],
            contract_id=None, scheduled_start=None, scheduled_end=None, risk_level="medium")
        for r in records:
            self.arm_forgetting(r.visit_id)
        return records

    def arm_forgetting(self, vid: str) -> None:
        """Arm the forgetting of an unscheduled visit's records: once the events of its day
        are too old to be accepted (``max_event_age_s``), and the last one accepted has
        waited out its grace, and a second more, as its grace entry sorts after this one
        at the same instant. Nothing can raise its escalation again after that."""
        end = adhoc_day_end(vid)
        if end is not None:
            self.timers.push(end + self.max_event_age_s + self.grace_s + 1.0, TimerKind.ADHOC,
                             vid)

    def forget(self, vid: str) -> None:
        self.book.forget(vid)
