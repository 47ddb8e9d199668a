"""Safeguarding on repeated failure: ``safeguarding_review``, per person.

The late and missed visits policy (5.11): "Multiple missed or late calls will be classed as
a safeguarding issue and reported via the safeguarding reporting channels". The no-show
classification's threshold review asks that it be a governed decision with the "threshold
event count" and the visits behind it. So a person's ``late`` and ``missed`` escalations
are counted as they are raised, by their deadlines: once ``ECM_SAFEGUARDING_MISSED`` (2)
visits were missed, or ``ECM_SAFEGUARDING_LATE`` (3) were late (a missed visit was late
first, and counts there too), within ``ECM_SAFEGUARDING_WINDOW_S`` (7 days), a review is
raised listing them. The failures behind a review are spent on it: the next review needs
new ones. Per contract: ``ECM_SAFEGUARDING_CONTRACTS``.

A review is P2, or P1 for a person who lives alone or has a cognitive impairment (the
policy's 5.3: "particularly vulnerable if visits are late or missed"). Its id is
``safeguarding:<client_id>:<visit_id>:<kind>:safeguarding_review``, named after the failure
that reached the threshold, so a replay raises it once. It is a case like any other: an
owner is due (stream/rules/cases.py). A person's visits share a partition (keyed by
client), so one partition counts all of them; the counts are in its changelog
(stream/state/partition.py, ``failures``) and survive restarts, and a rebuild also counts
every late and missed its book holds, so that a crash between an escalation and the
changelog loses none.
"""

from __future__ import annotations

from typing import Any

from stream.contract.records import Escalation
from stream.rules.book import EscalationBook, escalation_id
from stream.rules.scoring import Assessment
from stream.rules.timers import TimerKind, Timers
from stream.settings import Settings
from stream.state.partition import PartitionState
from stream.timeutil import format_instant, parse_instant

KIND = "safeguarding_review"
PREFIX = "safeguarding:"
ROUTE = "safeguarding_referral"
COUNTED = ("late", "missed")

# A failure as the partition holds it: [deadline, kind, visit_id, the review it was spent
# on or ""].
Failure = list[Any]


class Safeguarding:
    def __init__(self, settings: Settings, book: EscalationBook, state: PartitionState,
                 timers: Timers) -> None:
        self.book = book
        self.state = state
        self.timers = timers
        self.default = (settings.safeguarding_missed, settings.safeguarding_late,
                        settings.safeguarding_window_s)
        self.contracts = settings.safeguarding_thresholds
        # Failures older than the longest window count toward nothing.
        self.keep_s = max([self.default[2], *(t[2] for t in self.contracts.values())])

    def thresholds(self, contract_id: str | None) -> tuple[int, int, float]:
        return self.contracts.get(contract_id or "", self.default)

    def observe(self, escalations: list[Escalation], now: float) -> list[Escalation]:
        """Count the late and missed escalations opened among ``escalations``; the reviews
        they raise."""
        raised: list[Escalation] = []
        for e in escalations:
            if e.revision == 1 and e.kind in COUNTED:
                at = parse_instant(e.deadline)
                if at is not None and self._add(e.client_id, [at, e.kind, e.visit_id, ""], now):
                    raised += self._judge(e, at, now)
        return raised

    def _add(self, client: str, failure: Failure, now: float) -> bool:
        held = self.state.failures.get(client, [])
        if any(f[1] == failure[1] and f[2] == failure[2] for f in held):
            return False  # counted already: a replay's
        keep = [f for f in held if f[0] >= now - self.keep_s]
        keep.append(failure)
        keep.sort(key=lambda f: (f[0], f[1], f[2]))
        self.state.failures[client] = keep
        self.state.failures_changed.add(client)
        return True

    def _judge(self, e: Escalation, at: float, now: float) -> list[Escalation]:
        missed_n, late_n, window = self.thresholds(e.contract_id)
        held = self.state.failures[e.client_id]
        live = [f for f in held if not f[3] and at - window <= f[0] <= at]
        missed = sorted({f[2] for f in live if f[1] == "missed"})
        late = sorted({f[2] for f in live if f[1] == "late"})
        if len(missed) < missed_n and len(late) < late_n:
            return []
        vid = f"{PREFIX}{e.client_id}:{e.visit_id}:{e.kind}"
        eid = escalation_id(vid, KIND)
        for f in live:
            f[3] = eid
        self.state.failures_changed.add(e.client_id)
        vulnerable = "lives_alone" in e.risk_flags or "cognitive_impairment" in e.risk_flags
        priority = "P1" if vulnerable else "P2"
        records = self.book.open_record(
            eid, KIND, at, now, {
                "visits": sorted({f[2] for f in live}), "missed": len(missed),
                "late": len(late), "window_s": window,
                "threshold": {"missed": missed_n, "late": late_n},
                "failures": [{"visit_id": f[2], "kind": f[1], "deadline": format_instant(f[0])}
                             for f in live]},
            Assessment(priority, 80 if vulnerable else 60, ROUTE),
            visit_id=vid, client_id=e.client_id, worker_ids=[], contract_id=e.contract_id,
            scheduled_start=None, scheduled_end=None, risk_level=e.risk_level,
            risk_flags=e.risk_flags)
        for r in records:
            self.arm_forgetting(r)
        return records

    def arm_forgetting(self, record: Escalation) -> None:
        """A review is held until its failures have left the window: forgotten then."""
        at = parse_instant(record.deadline) or 0.0
        self.timers.push(at + self.keep_s, TimerKind.REVIEW, record.visit_id)

    def restored(self) -> None:
        """After a rebuild: count the late and missed escalations the book holds that the
        changelog had not yet counted, spend those the reviews name, and arm the reviews'
        forgetting."""
        records = self.book.records
        for r in records.values():
            if r.kind in COUNTED:
                at = parse_instant(r.deadline)
                if at is not None:
                    self._add(r.client_id, [at, r.kind, r.visit_id, ""], at)
        for r in records.values():
            if r.kind != KIND:
                continue
            self.arm_forgetting(r)
            spent = {(f.get("kind"), f.get("visit_id")) for f in r.evidence.get("failures", ())
                     if isinstance(f, dict)}
            for f in self.state.failures.get(r.client_id, ()):
                if not f[3] and (f[1], f[2]) in spent:
                    f[3] = r.escalation_id
                    self.state.failures_changed.add(r.client_id)
