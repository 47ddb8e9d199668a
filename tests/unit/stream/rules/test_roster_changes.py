"""A roster update: cancellations and moved visits (stream/rules/detector.py, attendance)."""


from tests.factories import T0, visit
from tests.unit.stream.harness import Harness


def _kinds(h):
    return [(e["kind"], e["status"]) for e in h.escalations]


def test_cancelled_visit_raises_nothing():
    h = Harness()
    h.roster(visit(status="cancelled"))
    h.at(T0 + 50_000)
    assert h.escalations == []


def test_cancellation_resolves_what_was_open():
    h = Harness()
    h.roster(visit())
    h.at(T0 + 2000)
    h.roster(visit(status="cancelled"))
    assert _kinds(h) == [("late", "open"), ("missed", "open"),
                         ("missed", "resolved"), ("late", "resolved")]
    assert h.by_id("v1:missed", "resolved")["resolution"] == "cancelled"
    h.at(T0 + 50_000)
    assert len(h.escalations) == 4


def test_moved_start_recomputes_deadlines():
    h = Harness()
    h.roster(visit())
    h.at(T0 + 100)
    h.roster(visit(start=T0 + 3600))
    h.at(T0 + 3600 + 899)
    assert h.escalations == []
    h.at(T0 + 3600 + 900)
    assert h.by_id("v1:late")["scheduled_start"] == "2026-11-18T12:06:40.000Z"


def test_moved_start_earlier_raises_at_next_sweep():
    h = Harness()
    h.roster(visit(start=T0 + 3600))
    h.at(T0 + 1000)
    h.roster(visit(start=T0))
    h.at(T0 + 1000.5)
    assert _kinds(h) == [("late", "open")]
