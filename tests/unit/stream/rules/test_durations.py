"""shortened and extended (stream/rules/durations.py)."""


from tests.factories import T0, event, visit
from tests.unit.stream.harness import Harness


def _kinds(h):
    return [(e["kind"], e["status"]) for e in h.escalations]


def test_shortened_and_extended():
    h = Harness()
    h.roster(visit("v1", minutes=60), visit("v2", client_id="c2", minutes=30))
    h.events(event(at=T0, visit_id="v1"), event(at=T0, visit_id="v2", client_id="c2"))
    h.events(event("check_out", at=T0 + 2700, visit_id="v1"))  # 45 of 60 min: exactly 15 short
    h.events(event("check_out", at=T0 + 1800 + 900, visit_id="v2", client_id="c2"))
    short = h.by_id("v1:shortened")
    assert short["evidence"]["difference_s"] == -900.0
    long_ = h.by_id("v2:extended")
    assert long_["deadline"] == "2026-11-18T11:51:40.000Z"


def test_slightly_short_is_not_shortened():
    h = Harness()
    h.roster(visit(minutes=60))
    h.events(event(at=T0))
    h.events(event("check_out", at=T0 + 2701))
    assert h.escalations == []


def test_check_out_before_check_in_out_of_order():
    h = Harness()
    h.roster(visit(minutes=60))
    h.clock.set(T0 + 1300)
    # Both read after the late deadline, but the check-in reached Kafka in time.
    h.events(event("check_out", at=T0 + 1200))
    h.events(event(at=T0 + 5), stamps=[T0 + 6])
    assert _kinds(h) == [("shortened", "open")]
    h.at(T0 + 20_000)
    assert _kinds(h) == [("shortened", "open")]


def test_a_check_in_that_reached_kafka_after_the_deadline_is_late_after_the_fact():
    """What the monitor could know at the deadline is what had reached Kafka by then: a
    check-in on time by its device, delivered after the deadline, was late for the duty
    desk. Raised when it is read, and resolved by it."""
    h = Harness()
    h.roster(visit(minutes=60))
    h.clock.set(T0 + 1300)
    h.events(event(at=T0 + 5))
    assert _kinds(h) == [("late", "open"), ("late", "resolved")]
