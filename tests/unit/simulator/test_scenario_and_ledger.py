"""The simulator is deterministic, and the ledger applies the rules to the facts."""

import itertools
import random

from simulator.ledger import _visit_expectations, build_ledger
from simulator.region import Client, build_region
from simulator.rostering import Visit, build_roster
from simulator.scenario import EventFact, SimConfig, VisitFact, _visit_doc, build_scenario
from stream.timeutil import format_instant
from tests.factories import T0

SMALL = {"clients": 300, "workers": 40, "start_hour": 7.0, "hours": 3.0}


def _fingerprint(sc):
    return [(m.at, m.topic, m.raw, m.records) for m in sc.messages]


def test_same_seed_same_day_and_other_seed_another():
    a = build_scenario(SimConfig(seed=3, **SMALL))
    b = build_scenario(SimConfig(seed=3, **SMALL))
    c = build_scenario(SimConfig(seed=4, **SMALL))
    assert _fingerprint(a) == _fingerprint(b)
    assert _fingerprint(a) != _fingerprint(c)
    assert build_ledger(a).to_doc() == build_ledger(b).to_doc()


def test_runs_are_feasible_as_rostered():
    rng = random.Random(5)
    region = build_region(rng, 300, 40)
    roster = build_roster(rng, region, SimConfig().day_start, 3.2, 0.05)
    for run in roster.runs.values():
        for earlier, later in itertools.pairwise(run):
            assert later.start >= earlier.end  # nobody is booked in two homes at once


def _fact(**thresholds):
    client = Client("c1", 0, 52.63, 1.29, "medium", False, False, "01603 111111", "tag-1", 0)
    v = Visit("v1", client, ["w1"], T0, T0 + 1800, False, "morning", thresholds)
    return VisitFact(v, _visit_doc(v))


def _event(fact, etype, occurred, received, **doc):
    base = {"event_id": f"e-{etype}-{occurred}", "type": etype, "client_id": "c1",
            "worker_id": "w1", "occurred_at": format_instant(occurred), "method": "nfc",
            "tag_id": "tag-1", **doc}
    return EventFact(base, base["worker_id"], etype, occurred, received)


def test_on_time_visit_expects_nothing():
    f = _fact()
    evs = [_event(f, "check_in", T0 + 60, T0 + 62), _event(f, "check_out", T0 + 1800, T0 + 1801)]
    assert _visit_expectations(f, evs) == []


def test_check_in_on_time_but_delivered_after_the_deadline_expects_late():
    f = _fact()
    evs = [_event(f, "check_in", T0 + 60, T0 + 1000), _event(f, "check_out", T0 + 1800, T0 + 1801)]
    assert _visit_expectations(f, evs) == [("late", T0 + 900, T0 + 900)]


def test_nobody_came_expects_late_and_missed_and_no_check_out_needs_a_check_in():
    f = _fact()
    assert _visit_expectations(f, []) == [("late", T0 + 900, T0 + 900),
                                          ("missed", T0 + 1800, T0 + 1800)]


def test_cancelled_before_the_deadline_expects_nothing():
    f = _fact()
    f.cancelled_at = T0 + 600
    assert _visit_expectations(f, []) == []


def test_contract_thresholds_and_checked_in_without_check_out():
    f = _fact(late_after_s=600.0, missed_after_s=1200.0)
    evs = [_event(f, "check_in", T0 + 700, T0 + 701)]
    assert _visit_expectations(f, evs) == [("late", T0 + 600, T0 + 600),
                                           ("no_check_out", T0 + 3600, T0 + 3600)]


def test_wrong_place_and_wrong_phone():
    f = _fact()
    gps = {"method": "gps", "lat": 52.65, "lon": 1.29, "accuracy_m": 10.0}
    evs = [_event(f, "check_in", T0, T0 + 1, **gps),
           _event(f, "check_out", T0 + 1800, T0 + 1801, method="telephony",
                  caller_number="07700 900000")]
    kinds = {k: (t, base) for k, t, base in _visit_expectations(f, evs)}
    assert set(kinds) == {"location_mismatch", "location_unverified"}
    # Raised when the event that makes each true reaches Kafka: their cases count from then.
    assert kinds["location_mismatch"] == (T0, T0 + 1)
    assert kinds["location_unverified"] == (T0 + 1800, T0 + 1801)


def test_a_week_rosters_each_day_with_ids_of_its_own():
    from collections import Counter

    from simulator.scenario import SimConfig, build_scenario

    config = SimConfig(seed=2, clients=300, workers=40, start_hour=6.0, hours=18 + 2 * 24,
                       days=3)
    sc = build_scenario(config)
    ids = [v.visit_id for v in sc.roster.visits]
    assert len(ids) == len(set(ids))
    days = Counter(int((v.start - config.day_start) // 86400) for v in sc.roster.visits)
    assert all(days[d] > 500 for d in (0, 1, 2))  # and a few past the last midnight
    facts = [f for f in sc.facts.values() if f.visit.visit_id.startswith("d2-")]
    assert facts and any(f.events for f in facts)  # the last day is played too


def _late_pair(sc):
    """Two visits of one client rostered to one worker, the first attended: the first's
    check-in moved into the second's window, naming no visit, as a worker very late for
    the first would send it."""
    by_client = {}
    for f in sc.facts.values():
        if f.cancelled_at is None and len(f.doc["worker_ids"]) == 1:
            by_client.setdefault(f.doc["client_id"], []).append(f)
    for facts in by_client.values():
        facts.sort(key=lambda f: f.visit.start)
        for a, b in itertools.pairwise(facts):
            ins = [e for e in a.events if e.type == "check_in"]
            if a.doc["worker_ids"] == b.doc["worker_ids"] and ins and ins[0].accepted:
                e = ins[0]
                e.doc["occurred_at"] = format_instant(b.visit.start + 60)
                e.received = b.visit.start + 61
                e.doc.pop("visit_id", None)
                return a, b
    raise AssertionError("no client with two visits by one worker")


def test_a_check_in_no_input_attributes_leaves_both_visits_unjudged():
    sc = build_scenario(SimConfig(seed=3, **{**SMALL, "hours": 14.0}))
    a, b = _late_pair(sc)
    outs = [e for e in a.events if e.type == "check_out"]
    assert outs
    for e in outs:
        e.doc.pop("visit_id", None)
    ledger = build_ledger(sc)
    pair = {a.visit.visit_id, b.visit.visit_id}
    assert set(ledger.unjudged["visits"]) == pair
    assert ledger.unjudged["clients"] == [a.doc["client_id"]]
    assert not any(e.scored for e in ledger.expected
                   if e.escalation_id.rsplit(":", 1)[0] in pair)
    assert not ledger.judged({"kind": "late", "visit_id": b.visit.visit_id})
    assert not ledger.judged({"kind": "safeguarding_review", "client_id": a.doc["client_id"],
                              "visit_id": f"safeguarding:{a.doc['client_id']}:x:missed"})
    assert ledger.judged({"kind": "late", "visit_id": "elsewhere", "client_id": "c-other"})
    # A check-out naming the first visit takes the check-in back (docs/rules.md): judged.
    outs[0].doc["visit_id"] = a.visit.visit_id
    assert build_ledger(sc).unjudged == {"visits": [], "clients": []}


def test_what_the_next_visit_raised_while_it_held_the_check_in_is_expected():
    """The check-out naming the first visit came after the second's no-check-out deadline:
    by what had reached Kafka the second was checked in and not out then."""
    sc = build_scenario(SimConfig(seed=3, **{**SMALL, "hours": 14.0}))
    a, b = _late_pair(sc)
    outs = [e for e in a.events if e.type == "check_out"]
    assert outs
    b_end = b.visit.end + b.threshold("no_checkout_after_s")
    for e in outs:
        e.doc["visit_id"] = a.visit.visit_id
        e.received = max(e.received, b_end + 60)
    before = {x.kind for x in build_ledger(sc).expected
              if x.escalation_id.rsplit(":", 1)[0] == b.visit.visit_id}
    assert "no_check_out" in before
    for e in outs:  # taken back before the second's deadline: nothing held
        e.received = b.visit.start + 120
        e.doc["occurred_at"] = format_instant(b.visit.start + 119)
    after = {x.kind for x in build_ledger(sc).expected
             if x.escalation_id.rsplit(":", 1)[0] == b.visit.visit_id}
    assert "no_check_out" not in after
