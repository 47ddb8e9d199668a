"""The duty desk's plans, and what the ledger derives of them (simulator/desk.py,
simulator/cases.py), on a built day: no broker, no detector."""

from __future__ import annotations

from collections import Counter

from simulator.cases import expect_cases, priority
from simulator.desk import play_desk
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
            # (a worker who came after all, or a cancellation).
            assert stages in ({"owner", "pathway"}, set()), (eid, stages)
        elif plan == "slow":  # as ignored, until the late owner and pathway come
            assert not stages or {"owner", "pathway"} <= stages, (eid, stages)
        elif plan == "no_show" and "recovery" in truth.breaches.get(eid, ()):
            assert "closure" in truth.breaches[eid]
        elif plan == "prompt" and truth.verifications.get(eid):
            assert not set(truth.breaches.get(eid, ())) & {"recovery", "closure"}
    ignored = [e for e, p in desk.plans.items() if p == "ignored"]
    assert sum(1 for e in ignored if "owner" in truth.breaches.get(e, ())) > len(ignored) / 2
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
    reached the worker first decides the rest, so the case is not graded, and nothing
    else is left out."""
    sc, desk, _, truth = _day()
    g, end = sc.config.guard_s, sc.config.window[1]
    assert truth.unjudged_cases
    by_case: dict[str, list] = {}
    for a in desk.actions:
        if a.received <= end:  # the day is played to the window's end
            by_case.setdefault(a.doc["escalation_id"], []).append(a)
    for eid in truth.graded:
        fact = sc.facts.get(eid.rsplit(":", 1)[0])
        if fact is None:  # an unscheduled visit's: nothing answers it
            assert eid not in truth.unjudged_cases
            continue
        # Answered when its last rostered worker is known to be in (a double-up needs
        # both), or when it is cancelled.
        firsts: dict[str, float] = {}
        for ev in fact.events:
            if ev.accepted and ev.type == "check_in" and ev.received <= end:
                known = max(ev.received, ev.occurred)
                firsts[ev.worker] = min(firsts.get(ev.worker, known), known)
        need = len(fact.doc["worker_ids"])
        arrivals = sorted(firsts.values())[need - 1:need]
        if fact.cancelled_at is not None:
            arrivals.append(fact.cancelled_at)
        races = any(abs(a.received - t) < g for a in by_case.get(eid, ()) for t in arrivals)
        assert (eid in truth.unjudged_cases) == races, eid
    unjudged = set(truth.unjudged_actions)
    assert unjudged == {a.doc["action_id"] for eid in truth.unjudged_cases
                        for a in by_case[eid]}
    assert not unjudged & set(truth.refusals)
