"""Escalation records, and the book of what has been said about each escalation id.

An escalation id is ``<visit_id>:<kind>``: the same failure always gets the same id, so a
replay, a rebalance or a second worker can never open it twice. Its status moves ``open`` ->
``resolved`` once. The book is rebuilt at start from the escalation topic itself, which is
the record of what has been published.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from stream.contract import SCHEMA_VERSION, Event
from stream.scoring import KINDS, RESPOND_WITHIN_S, Assessment, assess
from stream.settings import Settings
from stream.state import VisitState
from stream.timeutil import format_instant

# Evidence values that are instants are stored as epoch seconds while deciding and
# published as RFC 3339.
_INSTANT_KEYS = frozenset({"arrived_at", "checked_in_at", "checked_out_at", "occurred_at"})


def escalation_id(visit_id: str, kind: str) -> str:
    return f"{visit_id}:{kind}"


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


class EscalationBook:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.records: dict[str, dict[str, Any]] = {}
        # Open records per visit id, so the common "nothing open here" is one lookup, and
        # per (kind, priority), so the open-escalations gauge costs nothing to scrape.
        self.open_per_visit: dict[str, int] = {}
        self.open_by_kind: Counter[tuple[str, str]] = Counter()

    def known(self, visit_id: str, kind: str) -> bool:
        return escalation_id(visit_id, kind) in self.records

    def has_open(self, visit_id: str) -> bool:
        return visit_id in self.open_per_visit

    def _count(self, record: dict[str, Any], step: int) -> None:
        """Count an open record in (``step`` 1) or out (``step`` -1)."""
        key = (str(record.get("kind")), str(record.get("priority")))
        n = self.open_by_kind[key] + step
        if n > 0:
            self.open_by_kind[key] = n
        else:
            del self.open_by_kind[key]
        vid = record.get("visit_id")
        if not isinstance(vid, str):
            return
        n = self.open_per_visit.get(vid, 0) + step
        if n > 0:
            self.open_per_visit[vid] = n
        else:
            self.open_per_visit.pop(vid, None)

    def open(self, vs: VisitState, kind: str, deadline: float, now: float,
             evidence: dict[str, Any]) -> list[dict[str, Any]]:
        """The open record, or nothing if this escalation id was ever raised."""
        v = vs.visit
        return self._open(
            escalation_id(v.visit_id, kind), kind, deadline, now, evidence,
            assess(kind, v.risk_level, time_critical=v.time_critical,
                   lives_alone=v.lives_alone, cognitive_impairment=v.cognitive_impairment),
            visit_id=v.visit_id, client_id=v.client_id, worker_ids=list(v.worker_ids),
            contract_id=v.contract_id, scheduled_start=format_instant(v.start),
            scheduled_end=format_instant(v.end), risk_level=v.risk_level)

    def _open(self, eid: str, kind: str, deadline: float, now: float,
              evidence: dict[str, Any], a: Assessment, **visit: Any) -> list[dict[str, Any]]:
        if eid in self.records:
            return []
        record = {
            "schema_version": SCHEMA_VERSION,
            "escalation_id": eid,
            "kind": kind,
            "status": "open",
            "visit_id": visit["visit_id"],
            "client_id": visit["client_id"],
            "worker_ids": visit["worker_ids"],
            "contract_id": visit["contract_id"],
            "scheduled_start": visit["scheduled_start"],
            "scheduled_end": visit["scheduled_end"],
            "deadline": format_instant(deadline),
            "detected_at": format_instant(now),
            "priority": a.priority,
            "risk_level": visit["risk_level"],
            "service_impact_score": a.service_impact_score,
            "recommended_route": a.recommended_route,
            "respond_by": format_instant(now + RESPOND_WITHIN_S),
            "evidence": _published(evidence),
        }
        self.records[eid] = record
        self._count(record, 1)
        return [record]

    def resolve(self, vs: VisitState, kind: str, now: float, resolution: str,
                evidence: dict[str, Any]) -> list[dict[str, Any]]:
        """The resolved record, or nothing unless this escalation id is open."""
        return self._resolve(escalation_id(vs.visit.visit_id, kind), now, resolution, evidence)

    def resolve_all(self, vs: VisitState, now: float, resolution: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for kind in KINDS:
            out += self.resolve(vs, kind, now, resolution, {})
        return out

    def _resolve(self, eid: str, now: float, resolution: str,
                 evidence: dict[str, Any]) -> list[dict[str, Any]]:
        record = self.records.get(eid)
        if record is None or record["status"] != "open":
            return []
        resolved = dict(record)
        resolved["status"] = "resolved"
        resolved["resolved_at"] = format_instant(now)
        resolved["resolution"] = resolution
        resolved["evidence"] = {**record["evidence"], **_published(evidence)}
        self.records[eid] = resolved
        self._count(record, -1)
        return [resolved]

    def unscheduled(self, event: Event, now: float, received: float) -> list[dict[str, Any]]:
        """A check-in or check-out for a client with no scheduled visit that matches it."""
        vid = adhoc_visit_id(event)
        return self._open(
            escalation_id(vid, "unscheduled"), "unscheduled",
            received + self.settings.unscheduled_grace_s, now,
            {"event_id": event.event_id, "event_type": event.type, "method": event.method,
             "occurred_at": event.occurred_at, "worker_id": event.worker_id},
            assess("unscheduled", "medium"),
            visit_id=vid, client_id=event.client_id, worker_ids=[event.worker_id],
            contract_id=None, scheduled_start=None, scheduled_end=None, risk_level="medium")

    def restore(self, record: dict[str, Any]) -> None:
        """Take a record read back from the escalation topic; the later status wins."""
        eid = record.get("escalation_id")
        if not isinstance(eid, str):
            return
        held = self.records.get(eid)
        if held is None or held["status"] == "open":
            self.records[eid] = record
            if held is not None:
                self._count(held, -1)
            if record.get("status") == "open":
                self._count(record, 1)

    def forget(self, visit_id: str) -> None:
        for kind in KINDS:
            record = self.records.pop(escalation_id(visit_id, kind), None)
            if record is not None and record["status"] == "open":
                self._count(record, -1)

    def open_count(self) -> int:
        return sum(self.open_by_kind.values())


def _published(evidence: dict[str, Any]) -> dict[str, Any]:
    return {k: format_instant(v) if k in _INSTANT_KEYS and isinstance(v, float) else v
            for k, v in evidence.items()}
