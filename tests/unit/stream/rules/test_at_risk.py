"""``at_risk`` and the ETA on late and missed, from the predictions of the workers' runs
(stream/rules/at_risk.py), on a manual clock: the run partitions' side is
tests/unit/stream/rules/test_runs.py."""

from __future__ import annotations

from stream.timeutil import format_instant
from tests.factories import T0, event, visit
from tests.unit.stream.harness import Harness

LATE_AT = T0 + 900  # the default late deadline
EID = "v1:at_risk"


def _predicted(arrival: float, at: float = T0 + 300, **kw) -> Harness:
    h = Harness()
    h.roster(visit(**kw))
    h.at(at)
    h.predict("v1", arrival)
    return h


def test_a_predicted_lateness_is_raised_before_the_late_deadline():
    h = _predicted(T0 + 1500)
    r = h.by_id(EID)
    assert r["kind"] == "at_risk" and r["recommended_route"] == "inform_and_reallocate"
    ev = r["evidence"]
    assert ev["expected_arrival"] == format_instant(T0 + 1500)
    assert ev["predicted_lateness_s"] == 1500 and ev["lead_s"] == 600
    assert ev["cause"] == "carried_from_previous_visit"
    assert ev["eta_basis"]["from"] == "inside" and ev["eta_basis"]["previous_visit_id"] == "v0"
    assert r["priority"] == "P3"  # scored as the late it predicts


def test_scored_like_late_with_the_persons_flags():
    h = _predicted(T0 + 1500, risk_level="high", time_critical=True, lives_alone=True)
    assert h.by_id(EID)["priority"] == "P1"


def test_in_time_or_no_basis_raises_nothing():
    assert _predicted(T0 + 800).escalations == []
    h = Harness()
    h.roster(visit())
    h.at(T0 + 300)
    h.predict("v1", None)
    assert h.escalations == []


def test_only_for_the_visit_the_worker_goes_to_next():
    # A chain through a visit the worker has not reached is a guess: its ETA stands, for
    # late and missed to carry, but it raises nothing.
    h = Harness()
    h.roster(visit())
    h.at(T0 + 300)
    h.predict("v1", T0 + 1500, basis=("run", "v0", T0 + 1200, 300.0, 5.0))
    assert h.escalations == []
    h.at(LATE_AT + 1)
    late = h.by_id("v1:late")["evidence"]
    assert late["expected_arrival"] == format_instant(T0 + 1500)
    assert late["eta_basis"]["from"] == "run"
    # Once the worker reaches the visit before, the chain starts where they are.
    h = Harness()
    h.roster(visit())
    h.at(T0 + 300)
    h.predict("v1", T0 + 1500, basis=("run", "v0", T0 + 1200, 300.0, 5.0))
    h.predict("v1", T0 + 1500, basis=("checked_out", "v0", T0 + 1200, 300.0, 5.0))
    assert [e["kind"] for e in h.escalations] == ["at_risk"]


def test_never_for_a_visit_already_checked_into_nor_past_its_deadline():
    h = Harness()
    h.roster(visit())
    h.events(event(at=T0 + 60))
    h.predict("v1", T0 + 1500)
    assert [e["kind"] for e in h.escalations] == []
    h = Harness()
    h.roster(visit())
    h.clock.set(LATE_AT + 1)
    h.predict("v1", T0 + 2000)
    assert "at_risk" not in [e["kind"] for e in h.escalations]


def test_resolved_when_the_worker_arrives():
    h = _predicted(T0 + 1500)
    h.events(event(at=T0 + 600))
    assert h.by_id(EID, "resolved")["resolution"] == "arrived"
    assert [e["kind"] for e in h.escalations if e["status"] == "open"] == ["at_risk"]


def test_resolved_when_the_prediction_comes_back_well_inside_the_deadline():
    h = _predicted(T0 + 1500)
    h.predict("v1", LATE_AT - 100)  # inside, but within the margin: still at risk
    assert [e["status"] for e in h.escalations] == ["open"]
    h.predict("v1", LATE_AT - 400)
    assert h.by_id(EID, "resolved")["resolution"] == "prediction_recovered"
    h.predict("v1", T0 + 2000)  # predicted late again: an id opens once
    assert [e["status"] for e in h.escalations] == ["open", "resolved"]


def test_a_withdrawn_prediction_resolves_it():
    h = _predicted(T0 + 1500)
    h.predict("v1", None)
    assert h.by_id(EID, "resolved")["resolution"] == "prediction_recovered"


def test_late_takes_over_at_the_deadline_with_the_eta():
    h = _predicted(T0 + 1500)
    h.at(LATE_AT)
    assert h.by_id(EID, "resolved")["resolution"] == "late_raised"
    late = h.by_id("v1:late")["evidence"]
    assert late["expected_arrival"] == format_instant(T0 + 1500)
    assert late["cause"] == "carried_from_previous_visit"
    assert late["eta_basis"]["travel_s"] == 300.0


def test_late_and_missed_carry_no_eta_without_a_basis():
    h = Harness()
    h.roster(visit())
    h.at(T0 + 1800)
    for kind in ("late", "missed"):
        assert "expected_arrival" not in h.by_id(f"v1:{kind}")["evidence"]


def test_a_double_up_is_expected_when_its_last_worker_is():
    h = Harness()
    h.roster(visit(workers=("w1", "w2")))
    h.at(T0 + 300)
    h.predict("v1", T0 + 1500, worker_id="w1")
    assert h.escalations == []  # w2 has no prediction: the visit has none
    h.predict("v1", T0 + 600, worker_id="w2")
    assert h.by_id(EID)["evidence"]["expected_arrival"] == format_instant(T0 + 1500)


def test_a_prediction_for_a_worker_no_longer_rostered_is_dropped():
    h = Harness()
    h.roster(visit())
    h.at(T0 + 300)
    h.predict("v1", T0 + 1500, worker_id="w7")
    assert h.escalations == [] and h.detector.visits["v1"].predictions is None


def test_an_unreadable_prediction_changes_nothing_and_is_noted():
    h = Harness()
    h.roster(visit())
    h.feed(("prediction", {"visit_id": "v1", "worker_id": "w1"}))
    assert h.escalations == [] and h.detector.skipped[-1][0] == "prediction"


def test_a_cancelled_visit_resolves_it():
    h = _predicted(T0 + 1500)
    h.roster(visit(status="cancelled"))
    assert h.by_id(EID, "resolved")["resolution"] == "cancelled"
