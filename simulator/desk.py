"""A duty desk playing its part in a simulated day: it acts on the missed visits the monitor
raises, through ``ecm.actions``, with realistic delays, and some of it goes wrong.

Per missed escalation in the scoring window, the desk follows one plan:

* ``prompt``: an owner and a pathway in time; the recovery worker, booked on the roster as
  a visit of its own, comes well before the recovery deadline; the desk completes and
  closes the case as ``recovered``;
* ``late_recovery``: the same, but the worker comes after the recovery deadline; the desk
  first claims ``recovered`` (refused: the evidence is late), then ``recovered_late``;
* ``no_show``: the recovery worker never comes; the desk completes and claims
  ``recovered`` all the same (refused: no verified check-in); the case stays open;
* ``slow``: the owner and the pathway each come after their deadline, then as ``prompt``;
* ``declined``: the person declines: a decision with a reviewer, and a close as
  ``client_declined``, before any deadline;
* ``premature``: a close before any completion (refused by the stage), then as ``prompt``;
* ``ignored``: nobody acts.

Every instant is planned a guard band away from the deadline it races (the ledger's
``guard_s``). The desk acts only on what its board shows: the player holds each action
until its escalation is on the topic (simulator/watch.py), and the ledger judges the
actions by when they were in fact sent. What the monitor must make of these actions is
derived in :mod:`simulator.cases`, not here.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from simulator.rostering import Visit
from simulator.scenario import EventFact, Message, Scenario, VisitFact, _visit_doc
from stream.settings import Settings
from stream.timeutil import format_instant

PLANS = (("prompt", 30), ("late_recovery", 10), ("no_show", 10), ("slow", 15),
         ("declined", 10), ("premature", 10), ("ignored", 15))
RECOVERY_MINUTES = 30.0


@dataclass
class ActionFact:
    doc: dict[str, Any]
    received: float  # when it reaches Kafka; the desk decided it a moment before


@dataclass
class Desk:
    """What the desk did: its actions in the order sent, the plan per escalation id, and
    the recovery visit it booked per escalation id."""

    actions: list[ActionFact] = field(default_factory=list)
    plans: dict[str, str] = field(default_factory=dict)
    recovery_visits: dict[str, str] = field(default_factory=dict)


def sla(settings: Settings, priority: str, kind: str) -> tuple[float, float | None]:
    """The owner and pathway deadlines' lengths (the pathway's None for a review kind)."""
    owner, pathway = ((settings.case_owner_sla_p1_s, settings.case_pathway_sla_p1_s)
                      if priority == "P1" else
                      (settings.case_owner_sla_s, settings.case_pathway_sla_s))
    return owner, pathway if kind in settings.case_kind_set else None


def play_desk(sc: Scenario, missed: list[tuple[str, float, str]], settings: Settings,
              seed: int) -> Desk:
    """Plan the desk's work on ``missed`` escalations ``(escalation_id, deadline,
    priority)``, adding its actions and its recovery visits (roster records and the
    recovery workers' events) to the scenario's messages and facts."""
    rng = random.Random(seed)
    desk = Desk()
    g = sc.config.guard_s
    names, weights = zip(*PLANS, strict=True)
    for n, (eid, deadline, priority) in enumerate(sorted(missed)):
        fact = sc.facts[eid.rsplit(":", 1)[0]]
        plan = rng.choices(names, weights)[0]
        desk.plans[eid] = plan
        _Plan(sc, desk, rng, fact, eid, deadline, priority, n, settings, g).run(plan)
    sc.messages.sort(key=lambda m: m.at)
    return desk


def known(ev: EventFact) -> float:
    """When an event was both true and known: its device time, or when it reached Kafka
    if that was later (docs/rules.md: each fact is judged by both)."""
    return max(ev.occurred, ev.received)


def attended_at(events: Iterable[EventFact], need: int) -> float:
    """When the ``need``-th distinct worker's first check-in among ``events`` was known
    (a double-up needs both); infinity before."""
    firsts: dict[str, float] = {}
    for ev in events:
        if ev.accepted and ev.type == "check_in":
            at = known(ev)
            firsts[ev.worker] = min(firsts.get(ev.worker, at), at)
    came = sorted(firsts.values())
    return came[need - 1] if len(came) >= need else math.inf


def answered_at(fact: VisitFact) -> float:
    """When the visit itself answers a missed escalation, as Kafka knows it: its last
    rostered worker's first check-in, or its cancellation; infinity if neither."""
    answer = attended_at(fact.events, len(fact.doc["worker_ids"]))
    return min(answer, fact.cancelled_at if fact.cancelled_at is not None else math.inf)


class _Plan:
    def __init__(self, sc: Scenario, desk: Desk, rng: random.Random, fact: VisitFact,
                 eid: str, base: float, priority: str, n: int, settings: Settings,
                 guard: float) -> None:
        self.sc, self.desk, self.rng, self.fact = sc, desk, rng, fact
        self.eid, self.base, self.n, self.g = eid, base, n, guard
        self.answer = answered_at(fact)
        self.owner_s, pathway = sla(settings, priority, "missed")
        assert pathway is not None
        self.pathway_s = pathway
        self.k = 0

    def act(self, at: float, type_: str, **fields: Any) -> float:
        self.k += 1
        received = at + self.rng.uniform(1, 5)
        if abs(received - self.answer) < self.g:
            # Which reaches the worker first, this or the visit's own answer (its worker
            # arriving late), decides the rest: kept a guard band after it.
            at, received = at + self.answer + self.g - received, self.answer + self.g
        doc = {"action_id": f"desk-{self.n:05d}-{self.k}", "escalation_id": self.eid,
               "client_id": self.fact.doc["client_id"], "type": type_,
               "at": format_instant(at), "by": "desk-u1", **fields}
        self.desk.actions.append(ActionFact(doc, received))
        self.sc.messages.append(Message(received, "actions", [doc]))
        return received

    def in_time(self, sla_s: float, after: float) -> float:
        """An instant before a deadline ``sla_s`` after the escalation, after ``after``:
        at least a guard band after the escalation could have been raised, and a guard
        band before the deadline."""
        lo = max(self.base + self.g + 20, after + 20)
        hi = self.base + sla_s - self.g / 2
        return self.rng.uniform(lo, max(lo, hi))

    def run(self, plan: str) -> None:
        rng, base, g = self.rng, self.base, self.g
        if plan == "ignored":
            return
        if plan == "declined":
            t = self.act(self.in_time(self.owner_s, base), "record_decision",
                         action_type="client_declined_visit", reviewer_id="desk-r1")
            self.act(t + rng.uniform(10, 30), "close", validation_status="validated",
                     final_outcome_code="client_declined")
            return
        if plan == "premature":
            t = self.act(base + g + rng.uniform(20, 60), "close",
                         validation_status="validated", final_outcome_code="recovered")
        else:
            t = base
        if plan == "slow":
            t = self.act(base + self.pathway_s + g + rng.uniform(60, 300), "acknowledge",
                         owner_id="desk-m1")
            t = self.act(t + rng.uniform(60, 300), "assign_recovery", **self.pathway(t))
        else:
            t = self.act(self.in_time(self.owner_s * 0.6, t), "acknowledge",
                         owner_id="desk-m1")
            t = self.act(self.in_time(self.pathway_s, t), "assign_recovery", **self.pathway(t))
        deadline = self.deadline
        if plan == "no_show":
            self.recovery(arrive=None)
            t = self.act(deadline + g + rng.uniform(120, 600), "complete_recovery",
                         service_outcome="care_delivered", member_condition="stable")
            self.act(t + rng.uniform(60, 300), "close", validation_status="validated",
                     final_outcome_code="recovered")
            return
        late = plan == "late_recovery"
        arrive = (deadline + g + rng.uniform(60, 600) if late
                  else rng.uniform(t + 600, deadline - RECOVERY_MINUTES * 60 - 2 * g))
        left = self.recovery(arrive)
        t = self.act(left + rng.uniform(120, 600), "complete_recovery",
                     service_outcome="care_delivered", member_condition="stable")
        t = self.act(t + rng.uniform(60, 300), "close", validation_status="validated",
                     final_outcome_code="recovered")
        if late:
            self.act(t + rng.uniform(60, 300), "close", validation_status="validated",
                     final_outcome_code="recovered_late")

    def pathway(self, at: float) -> dict[str, Any]:
        self.worker = f"rw-{self.n:05d}"
        self.deadline = at + self.rng.uniform(3600, 2 * 3600)
        self.booked_at = at
        return {"recovery_action_code": "immediate_replacement",
                "assigned_worker_id": self.worker,
                "recovery_deadline": format_instant(self.deadline)}

    def recovery(self, arrive: float | None) -> float:
        """Book the recovery visit on the roster (when the pathway is assigned); the worker
        comes at ``arrive`` (None: never), checks in and out inside the fence, and leaves
        at the instant returned."""
        rng, v = self.rng, self.fact.visit
        start = arrive if arrive is not None else self.booked_at + 1800
        vid = f"{v.visit_id}-r"
        visit = Visit(vid, v.client, [self.worker], start, start + RECOVERY_MINUTES * 60,
                      False, "recovery", dict(v.thresholds))
        doc = _visit_doc(visit)
        fact = VisitFact(visit, doc, initial=doc, missed=arrive is None)
        self.sc.facts[vid] = fact
        self.desk.recovery_visits[self.eid] = vid
        self.sc.messages.append(Message(self.booked_at + 1, "roster", [doc]))
        if arrive is None:
            return start
        c = v.client
        leave = arrive + (RECOVERY_MINUTES - 5) * 60
        for etype, t in (("check_in", arrive), ("check_out", leave)):
            ev = {"event_id": f"{vid}-{self.worker}-{etype}", "type": etype,
                  "client_id": c.client_id, "worker_id": self.worker, "visit_id": vid,
                  "occurred_at": format_instant(t), "method": "gps",
                  "lat": c.lat, "lon": c.lon, "accuracy_m": 10.0, "gateway_id": "gw-gps"}
            received = t + rng.uniform(1, 5)
            fact.events.append(EventFact(ev, self.worker, etype, t, received))
            self.sc.messages.append(Message(received, "events", [ev]))
        return leave
