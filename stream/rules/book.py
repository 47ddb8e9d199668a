"""Escalation records, and the book of what has been said about each escalation id.

An escalation id is ``<visit_id>:<kind>``: the same failure always gets the same id, so a
replay, a rebalance or a second worker can never open it twice. Its record is published
again at each change (a snapshot, its revision one higher): ``resolved`` when the visit
answers it, or through its case's stages (stream/rules/cases.py) to ``closed``. The book is
rebuilt at start from the escalation topic itself, which is the record of what has been
published: the highest revision of each escalation wins.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec

from stream.contract import SCHEMA_VERSION
from stream.contract.records import FINAL_STATUSES, RISK_FLAGS, Case, Escalation
from stream.rules.scoring import KINDS, RESPOND_WITHIN_S, Assessment, assess
from stream.state.visit import VisitState
from stream.timeutil import format_instant, parse_instant

# Evidence values that are instants are stored as epoch seconds while deciding and
# published as RFC 3339.
_INSTANT_KEYS = frozenset({"arrived_at", "checked_in_at", "checked_out_at", "occurred_at"})


def escalation_id(visit_id: str, kind: str) -> str:
    return f"{visit_id}:{kind}"


class EscalationBook:
    def __init__(self) -> None:
        self.records: dict[str, Escalation] = {}
        # Open records per visit id, so the common "nothing open here" is one lookup, and
        # per (kind, priority), so the open-escalations gauge costs nothing to scrape.
        self.open_per_visit: dict[str, int] = {}
        self.open_by_kind: Counter[tuple[str, str]] = Counter()
        # And per (status, priority): the cases' stages (stream/rules/cases.py).
        self.open_by_status: Counter[tuple[str, str]] = Counter()
        # How many records each visit has, open or not: a visit record of a visit with none
        # (most of them) is built without looking each kind up (visit_records.py).
        self.per_visit: Counter[str] = Counter()
        # For the metrics, as numbers (never parsed back from the records' strings): when
        # each open record was detected, and, since they were last taken, each opening's
        # detection latency and each resolution's time to resolution, by kind.
        self.detected: dict[str, float] = {}
        self.latencies: list[tuple[str, float]] = []
        self.resolutions: list[tuple[str, float]] = []
        # The case a new escalation opens with, and what else forgets a record: the case
        # rules' (stream/rules/cases.py), once they are attached.
        self.new_case: Callable[[str, str, str | None, str, float], Case] = _no_case
        self.forgotten: Callable[[Escalation], None] = _nothing

    def known(self, visit_id: str, kind: str) -> bool:
        return escalation_id(visit_id, kind) in self.records

    def has_open(self, visit_id: str) -> bool:
        return visit_id in self.open_per_visit

    def is_open(self, visit_id: str, kind: str) -> bool:
        if visit_id not in self.open_per_visit:
            return False
        record = self.records.get(escalation_id(visit_id, kind))
        return record is not None and record.status not in FINAL_STATUSES

    def _count(self, record: Escalation, step: int) -> None:
        """Count an open record in (``step`` 1) or out (``step`` -1)."""
        for counts, key in ((self.open_by_kind, (record.kind, record.priority)),
                            (self.open_by_status, (record.status, record.priority))):
            n = counts[key] + step
            if n > 0:
                counts[key] = n
            else:
                del counts[key]
        vid = record.visit_id
        n = self.open_per_visit.get(vid, 0) + step
        if n > 0:
            self.open_per_visit[vid] = n
        else:
            self.open_per_visit.pop(vid, None)

    def open(self, vs: VisitState, kind: str, deadline: float, now: float,
             evidence: dict[str, Any]) -> list[Escalation]:
        """The open record, or nothing if this escalation id was ever raised."""
        v = vs.visit
        return self.open_record(
            escalation_id(v.visit_id, kind), kind, deadline, now, evidence,
            assess(kind, v.risk_level, time_critical=v.time_critical,
                   lives_alone=v.lives_alone, cognitive_impairment=v.cognitive_impairment),
            visit_id=v.visit_id, client_id=v.client_id, worker_ids=list(v.worker_ids),
            contract_id=v.contract_id, scheduled_start=format_instant(v.start),
            scheduled_end=format_instant(v.end), risk_level=v.risk_level,
            risk_flags=tuple(flag for flag in RISK_FLAGS if getattr(v, flag)))

    def open_record(self, eid: str, kind: str, deadline: float, now: float,
                    evidence: dict[str, Any], a: Assessment, **visit: Any
                    ) -> list[Escalation]:
        """The open record of escalation ``eid``, or nothing if it was ever raised."""
        if eid in self.records:
            return []
        record = Escalation(
            schema_version=SCHEMA_VERSION, escalation_id=eid, kind=kind, status="open",
            deadline=format_instant(deadline), detected_at=format_instant(now),
            priority=a.priority, service_impact_score=a.service_impact_score,
            recommended_route=a.recommended_route,
            respond_by=format_instant(now + RESPOND_WITHIN_S), evidence=_published(evidence),
            revision=1, level=1, breaches=(),
            case=self.new_case(eid, kind, visit.get("contract_id"), a.priority, now), **visit)
        self.records[eid] = record
        self.per_visit[record.visit_id] += 1
        self._count(record, 1)
        self.detected[eid] = now
        self.latencies.append((kind, now - deadline))
        return [record]

    def resolve(self, vs: VisitState, kind: str, now: float, resolution: str,
                evidence: dict[str, Any], answered: float | None = None) -> list[Escalation]:
        """The resolved record, or nothing unless this escalation id is open. ``answered``:
        when what answers it reached Kafka (now, unless given), which the evidence keeps
        as ``answered_at``: a case deadline that fell before it is breached all the same
        (cases.py), however late its timer is swept."""
        return self._resolve(escalation_id(vs.visit.visit_id, kind), now, resolution,
                             {**evidence, "answered_at": format_instant(
                                 now if answered is None else min(answered, now))})

    def resolve_all(self, vs: VisitState, now: float, resolution: str,
                    answered: float | None = None) -> list[Escalation]:
        out: list[Escalation] = []
        for kind in KINDS:
            out += self.resolve(vs, kind, now, resolution, {}, answered)
        return out

    def _resolve(self, eid: str, now: float, resolution: str,
                 evidence: dict[str, Any]) -> list[Escalation]:
        record = self.records.get(eid)
        if record is None or record.status in FINAL_STATUSES or record.case.pathway is not None:
            return []  # a case with a recovery pathway is people's to close (cases.py)
        resolved = msgspec.structs.replace(
            record, status="resolved", resolved_at=format_instant(now), resolution=resolution,
            evidence={**record.evidence, **_published(evidence)}, revision=record.revision + 1)
        self.records[eid] = resolved
        self._count(record, -1)
        opened = self.detected.pop(eid, None)
        if opened is not None:
            self.resolutions.append((record.kind, now - opened))
        return [resolved]

    def replace(self, record: Escalation) -> None:
        """Hold a new snapshot of a record held (a case's change), counted out if it is
        final now."""
        held = self.records[record.escalation_id]
        self.records[record.escalation_id] = record
        if held.status not in FINAL_STATUSES and held.status != record.status:
            self._count(held, -1)
            if record.status in FINAL_STATUSES:
                self.detected.pop(record.escalation_id, None)
            else:
                self._count(record, 1)

    def restore(self, doc: Any) -> bool:
        """Take a record read back from the escalation topic; the highest revision wins.
        False for a document that is not an escalation record, which is skipped."""
        if type(doc) is dict and "revision" not in doc:
            doc = _before_cases(doc)
        try:
            record = msgspec.convert(doc, Escalation)
        except msgspec.ValidationError:
            return False
        eid = record.escalation_id
        held = self.records.get(eid)
        if held is None or record.revision > held.revision:
            self.records[eid] = record
            if held is None:
                self.per_visit[record.visit_id] += 1
            if held is not None and held.status not in FINAL_STATUSES:
                self._count(held, -1)
            if record.status not in FINAL_STATUSES:
                self._count(record, 1)
                detected = parse_instant(record.detected_at)
                if detected is not None:
                    self.detected[eid] = detected
            else:
                self.detected.pop(eid, None)
        return True

    def forget(self, visit_id: str) -> None:
        for kind in KINDS:
            eid = escalation_id(visit_id, kind)
            record = self.records.pop(eid, None)
            if record is not None:
                self.per_visit.pop(visit_id, None)
                if record.status not in FINAL_STATUSES:
                    self._count(record, -1)
                    self.detected.pop(eid, None)
                self.forgotten(record)

    def take_timings(self) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """The detection latencies and times to resolution since the last call."""
        taken = self.latencies, self.resolutions
        self.latencies, self.resolutions = [], []
        return taken

    def open_count(self) -> int:
        return sum(self.open_by_kind.values())


def _no_case(eid: str, kind: str, contract_id: str | None, priority: str,
             detected: float) -> Case:
    return _EMPTY_CASE


def _nothing(record: Escalation) -> None:
    return None


_EMPTY_CASE = Case(owner_due=None, pathway_due=None)


def _before_cases(doc: dict[str, Any]) -> dict[str, Any]:
    """A record written before escalations carried cases: its revision from its status,
    an untouched case."""
    return {"revision": 1 if doc.get("status") == "open" else 2, "level": 1, "breaches": [],
            "case": {"owner_due": None, "pathway_due": None}, **doc}


def _published(evidence: dict[str, Any]) -> dict[str, Any]:
    if _INSTANT_KEYS.isdisjoint(evidence):
        return evidence  # the common case: nothing to format, the dict is the rule's own
    return {k: format_instant(v) if k in _INSTANT_KEYS and isinstance(v, float) else v
            for k, v in evidence.items()}
