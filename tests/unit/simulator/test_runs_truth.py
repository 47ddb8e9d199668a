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
    # Visits with two workers, or cancelled, are not graded.
    for vid in truth.late_at:
        assert len(sc.facts[vid].doc["worker_ids"]) == 1
        assert sc.facts[vid].cancelled_at is None
