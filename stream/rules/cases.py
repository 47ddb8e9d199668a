"""Controlled recovery: every escalation is a case with an owner, a pathway and deadlines,
escalated further when nobody acts, and closed only on evidence.

From missed-visit-recovery-escalation.txt:

* "The Duty Operations Manager must assign a named escalation owner within 10 minutes of
  missed visit escalation" (``ECM_CASE_OWNER_SLA_S``), and "a recovery pathway within 15
  minutes of escalation case creation" (``ECM_CASE_PATHWAY_SLA_S``), whose required fields
  are "recovery action code, assigned worker ID, escalation owner, and recovery deadline";
* "If ownership cannot be assigned, escalation must be elevated to senior management
  immediately": a deadline that passes with nobody acting is a *breach*, which raises the
  case's level (1 the duty desk, 2 senior management, 3 the emergency continuity route);
* "If recovery fails or is incomplete, the case must remain open and escalation status must
  be upgraded immediately": a recovery deadline without its evidence is a breach, and a
  close the evidence does not support is refused and raises the level;
* "The system must reconcile completion data against escalation case ID, recovery
  deadline, and assigned worker ID before closure": the assigned worker's own check-in,
  inside the fence, verifies the recovery (``verification``).

Actions arrive on ``ecm.actions`` keyed by client, so a case and its visit share a
partition. Their fields are checked by the contract (stream/contract/actions.py); here,
whether the case's stage allows them. Every change publishes the whole record again, its
revision one higher; the book (book.py) holds the latest, and a rebuild takes the highest
revision of each. A case has one timer entry at a time: its next deadline.

Deadlines are judged on the worker clock, by when an action or a check-in reached Kafka,
as every other deadline is (attendance.py).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from stream.contract import Event, Source
from stream.contract.records import (
    CASE_STATUSES,
    FINAL_STATUSES,
    MAX_LEVEL,
    NO_RECOVERY_OUTCOMES,
    Action,
    Case,
    Escalation,
)
from stream.rules.book import EscalationBook
from stream.rules.scoring import KINDS
from stream.rules.timers import TimerKind, Timers
from stream.settings import Settings
from stream.state.visit import VisitState
from stream.timeutil import format_instant, parse_instant

_CASE = TimerKind.CASE
_STAGE = {s: i for i, s in enumerate(CASE_STATUSES)}

# What an action's apply returns: the snapshots to publish, and a refusal
# ``(reason, detail)`` or None.
Applied = tuple[list[Escalation], tuple[str, str] | None]


class Cases:
    def __init__(self, settings: Settings, book: EscalationBook, timers: Timers) -> None:
        self.book = book
        self.timers = timers
        self.future_tolerance_s = settings.future_tolerance_s
        self.slas = (settings.case_owner_sla_s, settings.case_pathway_sla_s)
        self.slas_p1 = (settings.case_owner_sla_p1_s, settings.case_pathway_sla_p1_s)
        self.contracts = settings.contract_slas
        self.kinds = settings.case_kind_set
        # Every action applied: its escalation and where it came from (a repeat from
        # elsewhere is a duplicate; from the same place, a replay).
        self.actions: dict[str, tuple[str, Source]] = {}
        # Per client, the cases whose pathway sends a worker not yet seen there.
        self.recovering: dict[str, set[str]] = {}
        book.new_case = self._new_case
        book.forgotten = self._forget
        # For the metrics, since last taken: each stage first met, (stage, priority,
        # seconds from detection), and each breach, (stage, priority).
        self.timings: list[tuple[str, str, float]] = []
        self.breached: list[tuple[str, str]] = []

    def take(self) -> tuple[list[tuple[str, str, float]], list[tuple[str, str]]]:
        taken = self.timings, self.breached
        self.timings, self.breached = [], []
        return taken

    def _met(self, record: Escalation, stage: str, received: float) -> None:
        detected = self.book.detected.get(record.escalation_id)
        if detected is not None:
            self.timings.append((stage, record.priority, max(0.0, received - detected)))

    # ---- a new escalation's case --------------------------------------------------------

    def _new_case(self, eid: str, kind: str, contract_id: str | None, priority: str,
                  detected: float) -> Case:
        owner_s, pathway_s = self.slas_p1 if priority == "P1" else self.slas
        if contract_id is not None and contract_id in self.contracts:
            own, path = self.contracts[contract_id]
            owner_s = own if own is not None else owner_s
            pathway_s = path if path is not None else pathway_s
        owner_due = detected + owner_s
        self.timers.push(owner_due, _CASE, eid)
        return Case(owner_due=format_instant(owner_due),
                    pathway_due=format_instant(detected + pathway_s) if kind in self.kinds
                    else None)

    def _forget(self, record: Escalation) -> None:
        for entry in record.case.history:
            self.actions.pop(entry["action_id"], None)
        self._not_recovering(record)

    def _not_recovering(self, record: Escalation) -> None:
        held = self.recovering.get(record.client_id)
        if held is not None:
            held.discard(record.escalation_id)
            if not held:
                del self.recovering[record.client_id]

    # ---- actions ----------------------------------------------------------------------------

    def apply(self, action: Action, source: Source, received: float, now: float) -> Applied:
        """Apply one validated action: its snapshot, or its refusal. A replay from the same
        source position changes nothing and is not refused."""
        seen = self.actions.get(action.action_id)
        if seen is not None:
            if seen[1] == source:
                return [], None
            return [], ("duplicate_action", f"action {action.action_id} was applied already "
                        f"(to {seen[0]})")
        if action.at > now + self.future_tolerance_s:
            return [], ("clock_in_future", f"at is {action.at - now:.0f} s ahead of the "
                        "worker clock")
        record = self.book.records.get(action.escalation_id)
        if record is None or record.client_id != action.client_id:
            return [], ("unknown_escalation", f"no escalation {action.escalation_id} for "
                        "this client")
        if record.status in FINAL_STATUSES:
            return [], ("not_allowed", f"the case is {record.status}")
        case = record.case
        entry = {"by": action.by, "at": format_instant(action.at),
                 "received": format_instant(received), "action_id": action.action_id}
        if action.note is not None:
            entry["note"] = action.note
        status = record.status
        changes: dict[str, Any] = {}
        kind = action.type
        if kind == "acknowledge":
            if case.owner is None:
                self._met(record, "owner", received)
            changes["owner"] = {"owner_id": action.owner_id, **entry}
            status = _later(status, "acknowledged")
        elif kind == "assign_recovery":
            if case.owner is None:
                return [], ("not_allowed", "a recovery needs an owner: acknowledge first")
            assert action.recovery_deadline is not None
            if case.pathway is None:
                self._met(record, "pathway", received)
            changes["pathway"] = {"recovery_action_code": action.recovery_action_code,
                                  "assigned_worker_id": action.assigned_worker_id,
                                  "recovery_deadline": format_instant(action.recovery_deadline),
                                  **entry}
            changes["recovery_due"] = changes["pathway"]["recovery_deadline"]
            verified = case.verification
            if verified is not None and verified["worker_id"] != action.assigned_worker_id:
                changes["verification"] = None  # another worker's visit verifies nothing now
            status = _later(status, "recovery_assigned")
        elif kind == "record_decision":
            changes["decisions"] = (*case.decisions, {"action_type": action.action_type,
                                                      "reviewer_id": action.reviewer_id,
                                                      **entry})
        elif kind == "complete_recovery":
            if case.pathway is None:
                return [], ("not_allowed", "a completion needs a recovery pathway")
            if case.completion is None and case.pathway["assigned_worker_id"] is None:
                self._met(record, "recovery", received)
            changes["completion"] = {"service_outcome": action.service_outcome,
                                     "member_condition": action.member_condition, **entry}
            status = _later(status, "recovery_completed")
        else:
            refused = self._refuse_close(record, action, received, now)
            if refused is not None:
                return refused
            changes["closure"] = {"validation_status": action.validation_status,
                                  "final_outcome_code": action.final_outcome_code, **entry}
            status = "closed"
        changes["history"] = (*case.history, {"type": kind, **entry,
                                              "source": source.as_list()})
        snapshot = msgspec.structs.replace(
            record, status=status, revision=record.revision + 1,
            case=msgspec.structs.replace(case, **changes))
        self.book.replace(snapshot)
        self.actions[action.action_id] = (record.escalation_id, source)
        self._index(snapshot)
        if kind == "assign_recovery":
            assert action.recovery_deadline is not None
            self.timers.push(action.recovery_deadline, _CASE, record.escalation_id)
        return [snapshot], None

    def _refuse_close(self, record: Escalation, action: Action, received: float,
                      now: float) -> Applied | None:
        """A close's refusal, or None if the case may close. A close the evidence does not
        support also raises the case's level, once ("closure")."""
        case = record.case
        code = action.final_outcome_code
        if code in NO_RECOVERY_OUTCOMES:
            if not case.decisions:
                return [], ("not_allowed", f"{code} needs a recorded decision with a reviewer")
            return None
        if case.completion is None:
            return [], ("not_allowed", "a close needs a completed recovery (or, for "
                        "client_declined and no_action_needed, a recorded decision)")
        why = None
        if action.validation_status != "validated":
            why = "validation_status says a risk is outstanding: the case stays open"
        else:
            due = parse_instant(case.recovery_due) or 0.0
            if case.pathway is not None and case.pathway["assigned_worker_id"] is not None:
                verified = case.verification
                if verified is None:
                    why = (f"no verified check-in by {case.pathway['assigned_worker_id']}, the "
                           "assigned worker")
                elif code == "recovered" and not verified["in_time"]:
                    why = "the verified check-in came after the recovery deadline"
            elif code == "recovered" and (parse_instant(case.completion["received"])
                                          or 0.0) > due:
                why = "the completion came after the recovery deadline"
        if why is None:
            return None
        raised = self._breach(record, (("closure", received),), now)
        return raised, ("not_allowed", f"{code}: {why}")

    def _index(self, record: Escalation) -> None:
        """Whether a check-in at the record's client may verify its recovery."""
        pathway = record.case.pathway
        if (record.status not in FINAL_STATUSES and pathway is not None
                and pathway["assigned_worker_id"] is not None
                and record.case.verification is None):
            self.recovering.setdefault(record.client_id, set()).add(record.escalation_id)
        else:
            self._not_recovering(record)

    # ---- check-ins ---------------------------------------------------------------------------

    def recovery_worker(self, vs: VisitState, worker_id: str) -> bool:
        """Whether ``worker_id`` is the recovery worker of one of the visit's cases (their
        check-in there is no wrong_worker)."""
        eids = self.recovering.get(vs.visit.client_id)
        if eids is None:
            return False
        records = self.book.records
        return any(records[e].visit_id == vs.visit.visit_id
                   and records[e].case.pathway["assigned_worker_id"] == worker_id  # type: ignore[index]
                   for e in eids if e in records)

    def checked_in(self, vs: VisitState, ev: Event, located: bool, known: float,
                   now: float) -> list[Escalation]:
        """A check-in at a case's client: the assigned worker's, inside the fence (or by a
        tag or line on the roster: ``located``), verifies the recovery; anyone else's at
        the visit of a case with a pathway is kept as evidence."""
        out: list[Escalation] = []
        book = self.book
        for eid in sorted(self.recovering.get(ev.client_id, ())):
            record = book.records[eid]
            pathway = record.case.pathway
            if not located or pathway is None or pathway["assigned_worker_id"] != ev.worker_id:
                continue
            due = parse_instant(record.case.recovery_due) or 0.0
            verification = {"event_id": ev.event_id, "worker_id": ev.worker_id,
                            "visit_id": vs.visit.visit_id, "method": ev.method,
                            "checked_in_at": format_instant(ev.occurred_at),
                            "received": format_instant(known), "in_time": known <= due}
            self._met(record, "recovery", known)
            out.append(self._changed(record, verification=verification))
        vid = vs.visit.visit_id
        if vid in book.open_per_visit:
            for kind in KINDS:
                record = book.records.get(f"{vid}:{kind}")
                if (record is None or record.status in FINAL_STATUSES
                        or record.case.pathway is None
                        or record.case.pathway["assigned_worker_id"] == ev.worker_id
                        or any(a["event_id"] == ev.event_id for a in record.case.arrivals)):
                    continue
                arrival = {"event_id": ev.event_id, "worker_id": ev.worker_id,
                           "checked_in_at": format_instant(ev.occurred_at),
                           "located": located}
                out.append(self._changed(record, arrivals=(*record.case.arrivals, arrival)))
        return out

    def _changed(self, record: Escalation, **case_changes: Any) -> Escalation:
        snapshot = msgspec.structs.replace(
            record, revision=record.revision + 1,
            case=msgspec.structs.replace(record.case, **case_changes))
        self.book.replace(snapshot)
        self._index(snapshot)
        return snapshot

    # ---- deadlines ---------------------------------------------------------------------------

    def fire(self, eid: str, due: float, now: float) -> list[Escalation]:
        """A case's timer fell due: the deadlines due by then that nobody met are breaches,
        published together; the next deadline is armed."""
        record = self.book.records.get(eid)
        if record is None:
            return []
        # A case answered or closed by something that reached Kafka after a deadline has
        # breached it, however late the sweep came (a timer waits for its input).
        final = final_known(record)
        pending = [(stage, at) for stage, at in self._pending(record) if at < final]
        breached = tuple((stage, at) for stage, at in pending if at <= due)
        later = [at for _, at in pending if at > due]
        if later:
            self.timers.push(min(later), _CASE, eid)
        return self._breach(record, breached, now) if breached else []

    def _pending(self, record: Escalation) -> list[tuple[str, float]]:
        """The case's deadlines not yet breached nor met: ``(stage, due)``."""
        case = record.case
        done = {b["stage"] for b in record.breaches}
        received = [(h["type"], parse_instant(h["received"]) or 0.0) for h in case.history]
        out = []
        for stage, kind, text in (("owner", "acknowledge", case.owner_due),
                                  ("pathway", "assign_recovery", case.pathway_due)):
            at = parse_instant(text)
            if at is not None and stage not in done and not any(
                    t == kind and r <= at for t, r in received):
                out.append((stage, at))
        due = parse_instant(case.recovery_due)
        if due is not None and "recovery" not in done and not _recovered(case, due):
            out.append(("recovery", due))
        return sorted(out, key=lambda s: s[1])

    def _breach(self, record: Escalation, stages: tuple[tuple[str, float], ...],
                now: float) -> list[Escalation]:
        done = {b["stage"] for b in record.breaches}
        level = record.level
        breaches = list(record.breaches)
        for stage, due in stages:
            if stage in done:
                continue
            level = min(MAX_LEVEL, level + 1)
            self.breached.append((stage, record.priority))
            breaches.append({"stage": stage, "due": format_instant(due),
                             "detected_at": format_instant(now), "level": level})
        if len(breaches) == len(record.breaches):
            return []
        snapshot = msgspec.structs.replace(record, revision=record.revision + 1, level=level,
                                           breaches=tuple(breaches))
        self.book.replace(snapshot)
        return [snapshot]

    # ---- rebuilt -----------------------------------------------------------------------------

    def restored(self) -> None:
        """After the book is rebuilt: the actions index, the recovering cases, and each
        open case's next deadline armed (one already past fires at the first sweep, and
        raises nothing the partition had raised: its breaches are in the record)."""
        for eid, record in self.book.records.items():
            for entry in record.case.history:
                self.actions[entry["action_id"]] = (eid, Source.from_list(entry["source"]))
            final = final_known(record)
            if record.status not in FINAL_STATUSES:
                self._index(record)
            pending = [(stage, at) for stage, at in self._pending(record) if at < final]
            if pending:
                self.timers.push(pending[0][1], _CASE, eid)


def final_known(record: Escalation) -> float:
    """When what made the case final reached Kafka (its answer, or its accepted close);
    infinity while it is open."""
    if record.status == "resolved":
        return (parse_instant(record.evidence.get("answered_at"))
                or parse_instant(record.resolved_at) or 0.0)
    if record.status in FINAL_STATUSES:
        closure = record.case.closure or {}
        return parse_instant(closure.get("received")) or 0.0
    return math.inf


def _later(status: str, stage: str) -> str:
    return stage if _STAGE[stage] > _STAGE[status] else status


def _recovered(case: Case, due: float) -> bool:
    """Whether the recovery met its deadline: the assigned worker's verified check-in, or,
    for a pathway that sends nobody, the completion, by then."""
    pathway = case.pathway
    if pathway is not None and pathway["assigned_worker_id"] is not None:
        return case.verification is not None and case.verification["in_time"]
    return (case.completion is not None
            and (parse_instant(case.completion["received"]) or 0.0) <= due)
