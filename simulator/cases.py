"""The ground truth of controlled recovery: for each escalation the ledger expects, which
case deadlines must breach, which recoveries must be verified, and which of the duty
desk's actions must be refused, derived from the simulated facts by the rules as
docs/rules.md states them ("Cases"), not from the detector's code.

A case deadline counts from when the escalation is raised: no sooner than its ``base`` (the
deadline of a timer kind, or when the event that makes it true reached Kafka), and no later
than when it reached the escalation topic, which the desk saw (``seen``; without it, a
guard band after the base). The monitor's delay is not a fact of the day, so a deadline is
known to lie in ``[base + sla, raised by + sla]``: a fact that lands inside that band has
no single right answer, and that one outcome is left out of the grading (``ambiguous``)
rather than guessed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from simulator.desk import Desk, attended_at, known, sla
from simulator.ledger import Expected, matched_elsewhere
from simulator.safeguarding import KIND as REVIEW
from simulator.scenario import EventFact, Scenario, VisitFact
from stream.settings import Settings
from stream.timeutil import parse_instant

# Kinds whose raising instant the ledger does not place within a guard band: their
# durations are judged when a pair of events completes, in an order the ledger does not
# model. Their cases are not graded.
UNGRADED = frozenset({"shortened", "extended"})
# The priority table of docs/rules.md ("Priority, impact score and route").
_BASE = {"missed": 60, "late": 35, "no_check_out": 30, "location_mismatch": 30,
         "wrong_worker": 30, "shortened": 25, "unscheduled": 20, "location_unverified": 15,
         "extended": 10}
_RISK = {"low": 0, "medium": 10, "high": 20, "critical": 30}
_CARE_GAP = frozenset({"missed", "late", "no_check_out", "shortened"})
NO_RECOVERY_OUTCOMES = frozenset({"client_declined", "no_action_needed"})


def priority(kind: str, doc: dict[str, Any] | None) -> str:
    doc = doc or {}
    score = _BASE[kind] + _RISK.get(doc.get("risk_level", "medium"), 10)
    critical = bool(doc.get("time_critical"))
    alone, impaired = bool(doc.get("lives_alone")), bool(doc.get("cognitive_impairment"))
    if kind in _CARE_GAP:
        score += 15 * critical + 10 * alone + 10 * impaired
    score = min(100, score)
    if kind == "missed" and critical and (alone or impaired):
        return "P1"
    return "P1" if score >= 80 else "P2" if score >= 60 else "P3" if score >= 40 else "P4"


@dataclass
class CaseTruth:
    breaches: dict[str, list[str]] = field(default_factory=dict)  # eid -> stages
    ambiguous: dict[str, list[str]] = field(default_factory=dict)  # eid -> stages
    verifications: dict[str, bool] = field(default_factory=dict)  # eid -> in time
    refusals: dict[str, str] = field(default_factory=dict)  # action id -> reason
    graded: list[str] = field(default_factory=list)  # escalation ids whose cases are graded
    # The desk's actions whose outcome has no single right answer (an action and the
    # visit's own answer reached Kafka within a guard band of each other): not graded.
    unjudged_actions: list[str] = field(default_factory=list)
    unjudged_cases: list[str] = field(default_factory=list)

    def to_doc(self) -> dict[str, Any]:
        return {"breaches": self.breaches, "ambiguous": self.ambiguous,
                "verifications": self.verifications, "refusals": self.refusals,
                "graded": self.graded, "unjudged_actions": self.unjudged_actions,
                "unjudged_cases": self.unjudged_cases}


def expect_cases(sc: Scenario, expected: list[Expected], desk: Desk,
                 settings: Settings, seen: Mapping[str, float] | None = None) -> CaseTruth:
    truth = CaseTruth()
    start, end = sc.config.window
    until = end - 2 * sc.config.guard_s
    actions: dict[str, list[Any]] = {}
    for a in desk.actions:
        if a.received <= end:  # the day is played until the window's end
            actions.setdefault(a.doc["escalation_id"], []).append(a)
    # A check-in another visit held until a check-out naming its own took it back answers
    # its own visit only from then (docs/rules.md, "Matching an event to its visit").
    # The visit that held it has the no_check_out it raised meanwhile answered then.
    taken: dict[int, float] = {}
    released: dict[str, float] = {}
    for e, _, other, back in matched_elsewhere(sc, end, settings.match_window_s):
        if back is not None:
            taken[id(e)] = back.received
            vid = other.visit.visit_id
            released[vid] = min(released.get(vid, math.inf), known(back))
    for e in expected:
        if not e.scored or e.kind in UNGRADED:
            continue
        vid = e.escalation_id.rsplit(":", 1)[0]
        fact = sc.facts.get(vid)
        raised_by = (seen or {}).get(e.escalation_id, e.base + sc.config.guard_s)
        _Case(truth, sc, settings, e, fact, actions.get(e.escalation_id, []),
              desk.recovery_visits.get(e.escalation_id), (start, until),
              max(sc.config.guard_s, raised_by - e.base), taken,
              released.get(vid, math.inf)).derive()
    return truth


def everybody_out_at(events: list[EventFact], base: float) -> float:
    """When every worker known to have checked in was known to have checked out, no
    sooner than ``base``; infinity if never. Judged by what had reached Kafka at each
    instant: an offline phone's check-in that arrives after its own check-out does not
    hold open what the others' check-outs answered before it."""
    ins: set[str] = set()
    outs: set[str] = set()
    for ev in sorted(events, key=known):
        at = known(ev)
        if at > base and ins and ins <= outs:
            return base
        if ev.type == "check_in":
            ins.add(ev.worker)
        elif ev.type == "check_out":
            outs.add(ev.worker)
        if at >= base and ins and ins <= outs:
            return at
    return base if ins and ins <= outs else math.inf


class _Case:
    def __init__(self, truth: CaseTruth, sc: Scenario, settings: Settings, e: Expected,
                 fact: VisitFact | None, actions: list[Any], recovery: str | None,
                 window: tuple[float, float], band: float,
                 taken: Mapping[int, float], released: float) -> None:
        self.truth, self.sc, self.e, self.fact = truth, sc, e, fact
        self.taken = taken  # id of a held check-in -> when it was taken back
        self.released = released  # when a check-in this visit held was taken back
        self.actions = sorted(actions, key=lambda a: a.received)
        self.recovery = sc.facts.get(recovery) if recovery else None
        self.window = window
        self.guard = sc.config.guard_s
        self.band = band  # how long after its base the escalation may have been raised
        if e.kind == REVIEW:  # P1 for a person living alone or with cognitive impairment
            doc = sc.facts[e.escalation_id.split(":")[2]].doc
            p = "P1" if doc.get("lives_alone") or doc.get("cognitive_impairment") else "P2"
        else:
            p = priority(e.kind, fact.doc if fact is not None else None)
        self.owner_s, self.pathway_s = sla(settings, p, e.kind)
        self.tolerance = settings.future_tolerance_s

    def derive(self) -> None:
        e, t = self.e, self.truth
        eid = e.escalation_id
        t.graded.append(eid)
        final = math.inf  # when it was closed or resolved
        owner_at = pathway_at = math.inf  # first applied
        deadline = None  # the recovery's
        worker = None
        verified: tuple[float, bool] | None = None  # (when processed, in time)
        completed: float | None = None
        decided = False
        closure = False
        resolve_at = self._resolution()
        if resolve_at != math.inf and any(abs(a.received - resolve_at) < self.guard
                                          for a in self.actions):
            # Which came first, the desk's action or the visit's answer, decides all
            # that follows, and neither is a guard band clear of the other.
            t.unjudged_actions += [a.doc["action_id"] for a in self.actions]
            t.unjudged_cases.append(eid)
            for stage in ("owner", "pathway", "recovery", "closure"):
                self._unjudged(stage)
            return
        happenings: list[tuple[float, int, Any]] = [(resolve_at, 0, None)]
        happenings += [(a.received, 1, a) for a in self.actions]
        if self.recovery is not None:
            end = self.sc.config.window[1]
            happenings += [(ev.received, 2, ev) for ev in self.recovery.events
                           if ev.type == "check_in" and ev.accepted and ev.received <= end]
        for at, what, item in sorted(happenings, key=lambda h: (h[0], h[1])):
            if at == math.inf:
                break
            if what == 0:  # the visit answered it: resolved, unless people own its recovery
                if final == math.inf and pathway_at > at:
                    final = at
                continue
            if what == 2:
                if (final > at and worker == item.worker and verified is None
                        and deadline is not None):
                    verified = (at, max(item.occurred, item.received) <= deadline)
                    t.verifications[eid] = verified[1]
                continue
            doc = item.doc
            kind = doc["type"]
            refusal = None
            decided_at = parse_instant(doc["at"]) or 0.0
            if decided_at > at + self.tolerance:
                refusal = "clock_in_future"
            elif final <= at:
                refusal = "not_allowed"
            elif kind == "acknowledge":
                owner_at = min(owner_at, at)
            elif kind == "assign_recovery":
                if owner_at > at:
                    refusal = "not_allowed"
                else:
                    pathway_at = min(pathway_at, at)
                    deadline = parse_instant(doc["recovery_deadline"])
                    worker = doc.get("assigned_worker_id")
            elif kind == "record_decision":
                decided = True
            elif kind == "complete_recovery":
                if pathway_at > at:
                    refusal = "not_allowed"
                else:
                    completed = at if completed is None else completed
            else:  # close
                code = doc["final_outcome_code"]
                if code in NO_RECOVERY_OUTCOMES:
                    refusal = None if decided else "not_allowed"
                elif completed is None:
                    refusal = "not_allowed"
                else:
                    supported = doc["validation_status"] == "validated" and (
                        (verified is not None and (verified[1] or code == "recovered_late"))
                        if worker is not None else
                        (code == "recovered_late" or (deadline is not None
                                                      and completed <= deadline)))
                    if not supported:
                        refusal = "not_allowed"
                        if not closure:
                            closure = True
                            self._breach("closure", at, at)
                if refusal is None:
                    final = at
            if refusal is not None:
                t.refusals[doc["action_id"]] = refusal
        base = self.e.base
        self._stage("owner", base + self.owner_s, min(owner_at, final))
        if self.pathway_s is not None:
            self._stage("pathway", base + self.pathway_s, min(pathway_at, final))
        if deadline is not None:
            met = verified[0] if worker is not None and verified and verified[1] else (
                completed if worker is None and completed is not None
                and completed <= deadline else math.inf)
            self._exact("recovery", deadline, min(met, final))

    def _stage(self, stage: str, due: float, met: float) -> None:
        """A deadline known to within the monitor's delay: ``[due, due + band]``."""
        if not self.window[0] <= due <= self.window[1]:
            self._unjudged(stage)  # the tail after the scoring window is not judged
            return
        if met < due:
            return
        if met >= due + self.band:
            self._breach(stage, due, met)
        else:
            self._unjudged(stage)

    def _exact(self, stage: str, due: float, met: float) -> None:
        """A deadline the desk named: the instant is known; what is processed just after it
        may still come before the sweep, so the guard band after it is left out."""
        if not self.window[0] <= due <= self.window[1]:
            self._unjudged(stage)
            return
        if met <= due:
            return
        if met >= due + self.guard:
            self._breach(stage, due, met)
        else:
            self._unjudged(stage)

    def _unjudged(self, stage: str) -> None:
        self.truth.ambiguous.setdefault(self.e.escalation_id, []).append(stage)

    def _breach(self, stage: str, due: float, met: float) -> None:
        self.truth.breaches.setdefault(self.e.escalation_id, []).append(stage)

    def _resolution(self) -> float:
        """When the visit answers the escalation (it is resolved if nobody owns a recovery
        pathway by then): an arrival for late and missed, everybody out for no_check_out,
        a cancellation for any kind; never for the others."""
        fact, kind = self.fact, self.e.kind
        if fact is None:
            return math.inf
        cancelled = fact.cancelled_at if fact.cancelled_at is not None else math.inf
        events = [ev if id(ev) not in self.taken else
                  replace(ev, received=max(ev.received, self.taken[id(ev)]))
                  for ev in fact.events if ev.accepted and ev.received < cancelled]
        answered = math.inf
        if kind in ("late", "missed"):
            answered = max(attended_at(events, len(fact.doc["worker_ids"])), self.e.base)
        elif kind == "no_check_out":
            answered = min(everybody_out_at(events, self.e.base),
                           max(self.released, self.e.base))
        return min(answered, cancelled if cancelled > self.e.base else math.inf)
