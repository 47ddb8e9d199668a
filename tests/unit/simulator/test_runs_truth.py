"""The ground truth of worker runs (simulator/runs.py) on a built day: no broker, no
detector. What is late, carried and callable follows from the facts as the module says."""

from __future__ import annotations

from simulator.ledger import build_ledger
from simulator.runs import LEAD_S, expect_runs
from simulator.scenario import Rates, SimConfig, build_scenario


def test_late_carried_and_callable_follow_from_the_facts():
    sc = build_scenario(SimConfig(seed=5, clients=3000, workers=380, start_hour=7.0,
                                  hours=6.0, rates=Rates(delay=0.08)))
    truth = expect_runs(sc, build_ledger(sc).score_until)
    assert len(truth.callable) >= 20 and set(truth.callable) <= set(truth.carried)
    for vid in truth.carried:
        fact = sc.facts[vid]
        worker = fact.doc["worker_ids"][0]
        assert truth.arrived[vid] == fact.came[worker][0] > truth.late_at[vid]
        prev = sc.facts[fact.leg[0]]
        # Leaving when they left and driving as they drove, they could not be in time.
        assert prev.came[worker][1] + fact.leg[1] > truth.late_at[vid]
    delayed_only = [v for v, f in sc.facts.items() if v in truth.late_at and f.leg
                    and f.en_route_delay and truth.arrived[v] is not None
                    and truth.arrived[v] - f.en_route_delay <= truth.late_at[v] - 300]
    assert delayed_only and not set(delayed_only) & set(truth.carried)
    for vid in truth.callable:  # what had reached Kafka by the lead time says so
        fact = sc.facts[vid]
        prev = sc.facts[fact.leg[0]]
        at = truth.late_at[vid] - LEAD_S
        worker = fact.doc["worker_ids"][0]
        assert any(ev.worker == worker and ev.received <= at for ev in prev.events)
    # The causes a late should state, where one was injected.
    causes = truth.causes
    assert {c for c in causes.values()} == {"carried_from_previous_visit", "travel",
                                            "unknown", "phone_offline"}
    run_causes = {"carried_from_previous_visit", "travel"}
    assert {v for v, c in causes.items() if c in run_causes} == set(truth.carried)
    for vid in (v for v, c in causes.items() if c == "carried_from_previous_visit"):
        fact = sc.facts[vid]  # leaving the visit before at its end, in time
        assert fact.leg is not None
        assert sc.facts[fact.leg[0]].visit.end + fact.leg[1] <= truth.late_at[vid]
    assert set(delayed_only) <= {v for v, c in causes.items() if c == "unknown"}
    for vid in (v for v, c in causes.items() if c == "phone_offline"):
        fact = sc.facts[vid]  # there in time, the check-in delivered after the deadline
        assert truth.arrived[vid] <= truth.late_at[vid]
        ins = [ev.received for ev in fact.events if ev.type == "check_in" and ev.accepted]
        assert min(ins) > truth.late_at[vid]
    # Visits with two workers, or cancelled, are not graded.
    for vid in truth.late_at:
        assert len(sc.facts[vid].doc["worker_ids"]) == 1
        assert sc.facts[vid].cancelled_at is None


def test_the_scorer_grades_at_risk_and_the_eta_against_the_truth():
    from simulator.ledger import Ledger
    from simulator.score import score_runs
    from stream.timeutil import format_instant

    t0 = 1_795_000_000.0
    late_at = {"a": t0, "b": t0, "c": t0, "d": t0}
    # a: late and callable; b: late, not callable; c: in time; d: never came.
    ledger = Ledger(t0 - 3600, t0 + 3600, t0 + 3000, 60.0, [], {}, runs={
        "late_at": late_at, "arrived": {"a": t0 + 600, "b": t0 + 300, "c": t0 - 60,
                                        "d": None},
        "carried": ["a", "b"], "callable": ["a"], "lead_s": 600.0,
        "causes": {"a": "carried_from_previous_visit", "b": "carried_from_previous_visit",
                   "c": "phone_offline"}})

    def esc(vid: str, kind: str, detected: float, eta: float | None, revision: int = 1,
            cause: str | None = None) -> dict:
        ev = {"expected_arrival": format_instant(eta)} if eta is not None else {}
        if cause is not None:
            ev["cause"] = cause
        return {"escalation_id": f"{vid}:{kind}", "kind": kind,
                "status": "open" if revision == 1 else "resolved",
                "revision": revision, "detected_at": format_instant(detected), "evidence": ev}

    report = score_runs(ledger, [esc("a", "at_risk", t0 - 900, t0 + 540),
                                 esc("c", "at_risk", t0 - 300, t0 + 60),
                                 esc("d", "at_risk", t0 - 120, t0 + 900),
                                 esc("a", "late", t0 + 5, t0 + 660,
                                     cause="carried_from_previous_visit"),
                                 esc("b", "late", t0 + 5, None, cause="unknown"),
                                 # c's phone held its check-in: its resolution says so
                                 esc("c", "late", t0 + 5, None, cause="unknown"),
                                 esc("c", "late", t0 + 5, None, 2, cause="phone_offline")])
    a = report["at_risk"]
    assert (a["raised"], a["true"], a["callable"], a["caught"]) == (3, 2, 1, 1)
    assert a["precision"] == 2 / 3 and a["recall"] == 1.0
    assert a["lead_p10_s"] == 120.0 and a["lead_p50_s"] in (120.0, 900.0)  # d's, a's
    assert a["spurious_ids"] == ["c"]
    eta = report["eta"]
    assert eta["at_risk"]["with_eta"] == 3 and eta["at_risk"]["error_p50_s"] == 60.0  # a; c 120
    assert eta["late"] == {"with_eta": 1, "error_p50_s": 60.0, "error_p90_s": 60.0}
    c = report["causes"]
    assert (c["graded"], c["right"]) == (3, 2)
    assert c["by_cause"]["carried_from_previous_visit"] == {"graded": 2, "right": 1,
                                                            "said": {"unknown": 1}}
    assert c["by_cause"]["phone_offline"]["right"] == 1
