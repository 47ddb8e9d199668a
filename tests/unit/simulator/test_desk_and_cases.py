"""The duty desk's plans, and what the ledger derives of them (simulator/desk.py,
simulator/cases.py), on a built day: no broker, no detector."""

from __future__ import annotations

import math
from collections import Counter

from simulator.cases import expect_cases, priority
from simulator.desk import answered_at, play_desk
from simulator.ledger import build_ledger
from simulator.scenario import Rates, SimConfig, build_scenario
from stream.settings import Settings


def _day():
    config = SimConfig(seed=3, clients=3000, workers=380, start_hour=7.0, hours=6.0,
                       rates=Rates(missed=0.08))
    sc = build_scenario(config)
    ledger = build_ledger(sc)
    missed = [(e.escalation_id, e.deadline,
               priority("missed", sc.facts[e.escalation_id.rsplit(":", 1)[0]].doc))
              for e in ledger.expected if e.kind == "missed" and e.scored]
    settings = Settings()
    desk = play_desk(sc, missed, settings, 4)
    ledger = build_ledger(sc)
    return sc, desk, ledger, expect_cases(sc, ledger.expected, desk, settings)


def test_each_plan_leads_to_what_the_rules_say():
    _, desk, _, truth = _day()
    plans = Counter(desk.plans.values())
    assert set(plans) == {"prompt", "late_recovery", "no_show", "slow", "declined",
                          "premature", "ignored"}
    refused = Counter()
    for a in desk.actions:
        reason = truth.refusals.get(a.doc["action_id"])
        if reason is not None:
            refused[(desk.plans[a.doc["escalation_id"]], a.doc["type"])] += 1
    for eid, plan in desk.plans.items():
        stages = set(truth.breaches.get(eid, ())) | set(truth.ambiguous.get(eid, ()))
        if plan == "ignored":
            # Both deadlines pass with nobody acting, unless the visit answered it first
            # (a worker who came after all, or a cancellation), or between them.
            assert stages in ({"owner", "pathway"}, {"owner"}, set()), (eid, stages)
        elif plan == "no_show" and "recovery" in truth.breaches.get(eid, ()):
            assert "closure" in truth.breaches[eid]
        elif plan == "prompt" and truth.verifications.get(eid):
            assert not set(truth.breaches.get(eid, ())) & {"recovery", "closure"}
    for late_plan in ("ignored", "slow"):  # the owner comes late, or never
        cases = [e for e, p in desk.plans.items() if p == late_plan]
        assert sum(1 for e in cases if "owner" in truth.breaches.get(e, ())) > len(cases) / 2
    # The premature close is refused by the stage; the no-show's claim by the evidence.
    assert refused[("premature", "close")] >= 1
    assert refused[("no_show", "close")] >= 1
    assert all(r == "not_allowed" for r in truth.refusals.values())
    assert any(v for v in truth.verifications.values())
    assert any(not v for v in truth.verifications.values())  # a late recovery, seen late


def test_recovery_visits_join_the_day_and_the_ledger():
    sc, desk, ledger, _ = _day()
    assert desk.recovery_visits
    for vid in desk.recovery_visits.values():
        assert vid in sc.facts
    # A recovery worker who never came leaves a recovery visit the ledger expects missed.
    no_show = [desk.recovery_visits[e] for e, p in desk.plans.items()
               if p == "no_show" and e in desk.recovery_visits]
    expected = {e.escalation_id for e in ledger.expected}
    assert any(f"{vid}:late" in expected for vid in no_show)


def test_a_case_whose_action_races_the_visits_own_answer_is_left_out():
    """A worker who comes after the missed deadline, seconds from the desk's action: which
    reached the worker first decides the rest, so the case is not graded. The desk plans
    its actions a guard band clear of the visit's answer; played, an action held for its
    escalation may still land in the band."""
    sc, desk, ledger, truth = _day()
    assert truth.unjudged_cases == [] and truth.unjudged_actions == []
    g = sc.config.guard_s
    answered = {}
    for a in desk.actions:
        eid = a.doc["escalation_id"]
        fact = sc.facts[eid.rsplit(":", 1)[0]]
        answered[eid] = answer = answered_at(fact)
        assert abs(a.received - answer) >= g - 1e-6
    # Held until its escalation showed, one action now lands 10 s after the answer.
    eid = next(e for e, t in answered.items() if t != math.inf)
    held = next(a for a in desk.actions if a.doc["escalation_id"] == eid)
    held.received = answered[eid] + 10
    again = expect_cases(sc, ledger.expected, desk, Settings())
    assert again.unjudged_cases == [eid]
    assert set(again.unjudged_actions) == {a.doc["action_id"] for a in desk.actions
                                           if a.doc["escalation_id"] == eid}
    assert not set(again.unjudged_actions) & set(again.refusals)
    assert eid not in again.verifications and eid not in again.breaches


def test_everybody_out_is_judged_by_what_kafka_knew_then():
    """A double-up whose second phone was offline: its check-out reached Kafka before its
    check-in. Until that check-in arrived only the first worker was known to be in, so
    their check-out answered the no_check_out (docs/rules.md: "every checked-in worker has
    checked out"), not the offline phone's later check-out."""
    from simulator.cases import everybody_out_at
    from simulator.scenario import EventFact

    def ev(worker, type_, occurred, received):
        return EventFact({}, worker, type_, occurred, received)

    base = 1000.0
    events = [ev("a", "check_in", 100, 102), ev("a", "check_out", 1500, 1600),
              ev("b", "check_out", 900, 1800), ev("b", "check_in", 50, 2100)]
    assert everybody_out_at(events, base) == 1600
    # Everybody known in was out before the deadline: answered at it.
    assert everybody_out_at(events[:2], 2000) == 2000
    # One worker in and never out: not answered.
    assert everybody_out_at([ev("a", "check_in", 100, 102)], base) == math.inf
    # A second worker known in before the first left keeps it open until both are out.
    both = [ev("a", "check_in", 100, 102), ev("b", "check_in", 110, 120),
            ev("a", "check_out", 1500, 1600), ev("b", "check_out", 1700, 1750)]
    assert everybody_out_at(both, base) == 1750
    # An out known before the deadline, then a new check-in after it: answered by its out.
    late = [ev("a", "check_in", 100, 102), ev("a", "check_out", 500, 510),
            ev("b", "check_in", 1200, 1210), ev("b", "check_out", 1400, 1420)]
    assert everybody_out_at(late, base) == base


def test_a_check_in_held_by_the_next_visit_answers_its_own_case_only_once_taken_back():
    """The late pair (docs/rules.md, "Matching an event to its visit"): a check-in naming no
    visit went to the client's next visit until the check-out naming the first arrived.
    Until then the first visit's late case was open at the monitor: an acknowledgement in
    between is applied, not refused, and the case is answered only from the take-back."""
    from simulator.desk import ActionFact, Desk
    from simulator.scenario import SimConfig as Config
    from stream.timeutil import format_instant
    from tests.unit.simulator.test_scenario_and_ledger import SMALL, _late_pair

    sc = build_scenario(Config(seed=3, **{**SMALL, "hours": 14.0}))
    a, _ = _late_pair(sc)
    ins = next(e for e in a.events if e.type == "check_in")
    outs = [e for e in a.events if e.type == "check_out"]
    assert outs
    back = ins.received + 1800  # the check-out naming the first visit, half an hour later
    for e in outs:
        e.doc["visit_id"] = a.visit.visit_id
        e.received = max(e.received, back)
    ledger = build_ledger(sc)
    eid = f"{a.visit.visit_id}:late"
    late = next(e for e in ledger.expected if e.escalation_id == eid)
    assert late.scored and late.base < ins.received
    at = ins.received + 600  # after the check-in arrived, before it was taken back
    desk = Desk(actions=[ActionFact({"action_id": "ack-1", "escalation_id": eid,
                                     "client_id": a.doc["client_id"], "type": "acknowledge",
                                     "at": format_instant(at - 1), "by": "desk-u1"}, at)])
    truth = expect_cases(sc, [late], desk, Settings(), {eid: late.base + 5})
    assert "ack-1" not in truth.refusals
    # Answered at the take-back: the pathway deadline before it, unmet, is breached.
    pathway_due = late.base + 5 + Settings().case_pathway_sla_s
    assert pathway_due < back
    assert "pathway" in truth.breaches.get(eid, []) + truth.ambiguous.get(eid, [])


def test_the_no_check_out_the_next_visit_raised_while_holding_is_answered_by_the_take_back():
    """The next visit's no-check-out deadline passed while it held the check-in; the
    check-out naming the first visit took it back, and answered that escalation then."""
    from simulator.desk import ActionFact, Desk
    from simulator.scenario import SimConfig as Config
    from stream.timeutil import format_instant
    from tests.unit.simulator.test_scenario_and_ledger import SMALL, _late_pair

    sc = build_scenario(Config(seed=3, **{**SMALL, "hours": 14.0}))
    a, b = _late_pair(sc)
    b.events = []  # the worker came to the next visit only later, out of the played day
    back = b.visit.end + b.threshold("no_checkout_after_s") + 900
    for e in a.events:
        if e.type == "check_out":
            e.doc["visit_id"] = a.visit.visit_id
            e.doc["occurred_at"] = format_instant(back - 1)
            e.received = back
    eid = f"{b.visit.visit_id}:no_check_out"
    held = next(e for e in build_ledger(sc).expected if e.escalation_id == eid)

    def ack(n, at):
        return ActionFact({"action_id": f"ack-{n}", "escalation_id": eid,
                           "client_id": b.doc["client_id"], "type": "acknowledge",
                           "at": format_instant(at - 1), "by": "desk-u1"}, at)

    desk = Desk(actions=[ack(1, held.base + 300), ack(2, back + 400)])
    truth = expect_cases(sc, [held], desk, Settings(), {eid: held.base + 5})
    assert truth.refusals == {"ack-2": "not_allowed"}
