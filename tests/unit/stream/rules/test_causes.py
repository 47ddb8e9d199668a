"""The cause on every late and missed (stream/rules/causes.py), on a manual clock: from the
run's prediction, a late roster change, a phone that held its check-in, or ``unknown``."""

from __future__ import annotations

from stream.timeutil import format_instant
from tests.factories import T0, event, visit
from tests.unit.stream.harness import Harness

LATE_AT, MISSED_AT = T0 + 900, T0 + 1800


def _late(h: Harness) -> dict:
    h.at(LATE_AT + 1)
    return h.by_id("v1:late")


def test_unknown_without_evidence():
    h = Harness()
    h.roster(visit())
    late = _late(h)["evidence"]
    assert late["cause"] == "unknown" and "expected_arrival" not in late
    h.at(MISSED_AT + 1)
    assert h.by_id("v1:missed")["evidence"]["cause"] == "unknown"


def test_the_runs_cause_where_its_prediction_explains_it():
    h = Harness()
    h.roster(visit())
    h.at(T0 + 300)
    h.predict("v1", T0 + 1500, cause="carried_from_previous_visit")
    assert _late(h)["evidence"]["cause"] == "carried_from_previous_visit"
    h = Harness()
    h.roster(visit())
    h.at(T0 + 300)
    # Out of the visit before at 3:20, 5 minutes away: due in time, and not come. Late by
    # the clock alone: the road, the phone or elsewhere; the run cannot say.
    h.predict("v1", T0 + 500, cause=None, basis=("checked_out", "v0", T0 + 200, 300.0, 5.0))
    assert _late(h)["evidence"]["cause"] == "unknown"


def test_carried_when_the_worker_is_still_inside_the_visit_before():
    # Predicted at 5:00 to leave the visit before at 8:00 and be here at 13:00; still
    # there at the deadline (the overrun came after the last prediction): carried.
    h = Harness()
    h.roster(visit())
    h.at(T0 + 300)
    h.predict("v1", T0 + 780, cause=None, basis=("inside", "v0", T0 + 480, 300.0, 5.0))
    assert _late(h)["evidence"]["cause"] == "carried_from_previous_visit"


def test_a_reassignment_or_move_shortly_before_the_start():
    h = Harness()
    h.roster(visit())
    h.at(T0 - 1200)
    h.roster(visit(workers=("w2",)))  # 20 minutes before the start
    h.at(T0 + 300)
    h.predict("v1", T0 + 1500, worker_id="w2")  # even where the run has its own cause
    late = _late(h)["evidence"]
    assert late["cause"] == "late_roster_change"
    assert late["cause_evidence"] == {"change": "reassigned",
                                      "changed_at": format_instant(T0 - 1200),
                                      "before_start_s": 1200.0}
    h = Harness()
    h.roster(visit(start=T0 + 1800))
    h.at(T0 - 600)
    h.roster(visit())  # brought forward by half an hour, ten minutes before the new start
    assert _late(h)["evidence"]["cause_evidence"]["change"] == "moved"
    h = Harness(start=T0 - 3 * 3600)
    h.roster(visit())
    h.at(T0 - 7200)
    h.roster(visit(workers=("w2",)))  # two hours ahead: planned, not late
    assert _late(h)["evidence"]["cause"] == "unknown"


def test_a_phone_that_held_its_check_in_is_stated_when_the_check_in_comes():
    h = Harness()
    h.roster(visit())
    assert _late(h)["evidence"]["cause"] == "unknown"
    h.clock.set(T0 + 2400)
    h.events(event(at=T0 + 60), stamps=[T0 + 2400])  # in at 1 min, delivered at 40 min
    for r in (h.by_id("v1:late", "resolved"), h.by_id("v1:missed", "resolved")):
        assert r["evidence"]["cause"] == "phone_offline"
        assert r["evidence"]["cause_evidence"] == {
            "worker_id": "w1", "checked_in_at": format_instant(T0 + 60),
            "delivered_at": format_instant(T0 + 2400), "delivery_delay_s": 2340.0}


def test_a_check_in_made_after_the_deadline_is_late_whatever_its_delivery():
    h = Harness()
    h.roster(visit())
    _late(h)
    h.clock.set(T0 + 2400)
    h.events(event(at=T0 + 1000), stamps=[T0 + 2400])  # came late, and held too
    assert h.by_id("v1:late", "resolved")["evidence"]["cause"] == "unknown"
