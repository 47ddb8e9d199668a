"""The ground truth of visit records, classification and safeguarding (simulator/records.py,
simulator/safeguarding.py), and a built day played through the worker's stages in process
against it: no broker, the same grading as ``ecm simulate``."""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec
import orjson

from simulator.ledger import build_ledger
from simulator.records import expect_records
from simulator.scenario import Rates, SimConfig, build_scenario
from simulator.score import score
from simulator.score_records import score_records, score_review_visits
from tests.unit.stream.inprocess import Worker

_SWEEP_S = 30.0
_MISSED_N, _LATE_N = 1, 2
# More of every failure than a day has, so that each is met.
_RATES = {"missed": 0.05, "no_access": 0.03, "late_cancel": 0.01, "reassign": 0.03,
          "move": 0.03}


def _day(**rates: Any) -> tuple[Any, Any]:
    config = SimConfig(seed=5, clients=3000, workers=380, start_hour=7.0, hours=6.0,
                       desk=False, rates=Rates(**rates))
    sc = build_scenario(config)
    # Lower thresholds than the default: a few hours hold few visits of any one person.
    ledger = build_ledger(sc, (_MISSED_N, _LATE_N, 604800.0))
    ledger.records = expect_records(sc, ledger)
    return sc, ledger


def _play(sc: Any, thresholds: tuple[int, int] = (_MISSED_N, _LATE_N)) -> Worker:
    """The day's messages in order, each when it is sent, swept as simulated time passes;
    ``thresholds``: the safeguarding rule's (missed, late)."""
    end = sc.config.window[1]
    w = Worker(start=sc.messages[0].at, future_tolerance_s=sc.config.future_tolerance_s,
               unscheduled_grace_s=sc.config.unscheduled_grace_s,
               safeguarding_missed=thresholds[0], safeguarding_late=thresholds[1])
    topics = {"roster": w.settings.topic_roster, "events": w.settings.topic_events}
    swept = sc.messages[0].at
    for m in sc.messages:
        if m.at > end:
            break
        while swept + _SWEEP_S < m.at:
            swept += _SWEEP_S
            w.sweep(swept)
        w.clock.set(max(w.clock.now(), m.at))
        if m.raw is not None:
            w.send(topics[m.topic], m.raw)
            continue
        for record in m.records or ():
            w.keyed(topics[m.topic], orjson.dumps(record), record["client_id"])
    w.sweep(end)
    return w


def test_the_truth_has_every_outcome_and_injected_cause():
    sc, ledger = _day(**_RATES)
    visits = ledger.records["visits"]
    assert {t["outcome"] for t in visits.values()} == {
        "attended", "attended_no_check_out", "missed", "cancelled"}
    causes = Counter(t["injected"] for t in visits.values())
    assert {"reassigned", "no_access", "silent", "late_cancellation"} <= set(causes)
    for t in visits.values():
        if t["injected"] == "silent":  # nothing says why: never "no"
            assert (t["service_side_disruption"], t["suggested_classification"]) == (
                "unknown", "needs_review")
        if t["injected"] == "no_access":
            assert t["suggested_classification"] == "access_barrier_possible"
    assert ledger.safeguarding, "a day with many missed visits has safeguarding reviews"
    for eid, vids in ledger.safeguarding.items():
        clients = {sc.facts[v].doc["client_id"] for v in vids}
        assert clients == {eid.split(":")[1]}


def test_a_day_played_in_process_writes_exactly_the_records_and_reviews_the_ledger_expects():
    sc, ledger = _day(**_RATES)
    w = _play(sc)
    records = [orjson.loads(msgspec.json.encode(r)) for r in w.visits]
    rec = score_records(ledger, records)
    assert rec is not None
    assert rec["graded"] > 1000 and rec["missing"] == 0 and rec["spurious"] == 0, rec
    for name, g in rec["fields"].items():
        assert g["accuracy"] == 1.0, (name, g)
    c = rec["classification"]
    assert c["accuracy"] == 1.0 and c["silent_said_no"] == 0, c
    escalations = [orjson.loads(msgspec.json.encode(e)) for e in w.escalations]
    report = score(ledger, escalations, [])
    sg = report["kinds"]["safeguarding_review"]
    assert sg["expected"] > 0 and (sg["precision"], sg["recall"]) == (1.0, 1.0), sg
    visits = score_review_visits(ledger, escalations)
    assert visits is not None and visits["right"] == visits["graded"] > 0
