import pytest

from stream.rules.scoring import assess
from tests.factories import T0, visit
from tests.unit.stream.harness import Harness


def test_missed_time_critical_for_person_alone_is_p1_emergency():
    a = assess("missed", "low", time_critical=True, lives_alone=True)
    assert (a.priority, a.recommended_route) == ("P1", "emergency_escalation")


def test_missed_time_critical_with_cognitive_impairment_is_p1_even_at_low_risk():
    a = assess("missed", "low", time_critical=True, cognitive_impairment=True)
    assert a.priority == "P1"


def test_late_low_risk_is_delayed_recovery():
    a = assess("late", "low")
    assert (a.priority, a.recommended_route) == ("P4", "delayed_recovery")


@pytest.mark.parametrize(("kind", "risk", "flags", "priority", "route"), [
    ("missed", "medium", {}, "P2", "immediate_replacement"),
    ("missed", "low", {}, "P2", "immediate_replacement"),
    ("late", "critical", {"time_critical": True}, "P1", "immediate_replacement"),
    ("late", "high", {}, "P3", "delayed_recovery"),
    ("location_mismatch", "critical", {"lives_alone": True}, "P2", "review"),
    ("location_unverified", "low", {}, "P4", "review"),
    ("no_check_out", "critical", {"lives_alone": True, "cognitive_impairment": True}, "P1",
     "emergency_escalation"),
])
def test_bands_and_routes(kind, risk, flags, priority, route):
    a = assess(kind, risk, **flags)
    assert (a.priority, a.recommended_route) == (priority, route)


def test_score_is_bounded():
    a = assess("missed", "critical", time_critical=True, lives_alone=True,
               cognitive_impairment=True)
    assert a.service_impact_score == 100


def test_escalation_carries_scoring_and_respond_by():
    h = Harness()
    h.roster(visit(risk_level="high", time_critical=True, lives_alone=True))
    h.at(T0 + 1800)
    missed = h.by_id("v1:missed")
    assert missed["priority"] == "P1"
    assert missed["recommended_route"] == "emergency_escalation"
    assert missed["service_impact_score"] == 100
    assert missed["respond_by"] == "2026-11-18T11:51:40.000Z"
    assert missed["risk_level"] == "high"
    # The person's flags travel with it, in the roster's order; a visit without any has none.
    assert missed["risk_flags"] == ["lives_alone", "time_critical"]
    h.roster(visit("v2", client_id="c2"))
    h.at(T0 + 3600)
    assert "risk_flags" not in h.by_id("v2:missed")
