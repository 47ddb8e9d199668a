"""Deadlines wait for their input: a partition's deadlines fall due only up to how far
every input partition has been read (its read marks), and are judged by what had reached
Kafka by the deadline."""

import math

from stream.rules.inputs import InputMarks
from tests.factories import T0, event, visit
from tests.unit.stream.harness import Harness

INPUTS = [("ecm.roster", 0), ("ecm.events", 0), ("ecm.events", 1)]
LATE = T0 + 900


def _waiting() -> Harness:
    h = Harness()
    h.detector.await_inputs(INPUTS)
    h.roster(visit())
    return h


def _attendance(h: Harness) -> list[tuple[str, str]]:
    return [(i, s) for i, s in h.statuses() if not i.endswith(":extended")]


def _read(h: Harness, until: float, *inputs: tuple[str, int]) -> None:
    h.detector.read([(t, p, until) for t, p in (inputs or INPUTS)])


def test_marks_only_move_forward_and_the_oldest_input_bounds():
    marks = InputMarks(INPUTS)
    assert marks.read_until() == -math.inf
    marks.note([("ecm.roster", 0, 10.0), ("ecm.events", 0, 12.0), ("ecm.events", 1, 11.0)])
    marks.note([("ecm.events", 1, 5.0)])  # an old owner's mark, read late
    assert marks.read_until() == 10.0
    assert InputMarks().read_until() == math.inf  # nothing awaited


def test_a_deadline_waits_until_every_input_is_read_past_it():
    h = _waiting()
    _read(h, LATE - 1)
    h.at(LATE + 60)
    assert h.escalations == []
    _read(h, LATE + 30, ("ecm.roster", 0), ("ecm.events", 0))
    h.at(LATE + 61)
    assert h.escalations == []  # ecm.events[1] is not read up to the deadline yet
    _read(h, LATE, ("ecm.events", 1))
    h.at(LATE + 120)
    assert h.statuses() == [("v1:late", "open")]
    late = h.by_id("v1:late")
    assert late["evidence"]["input_held_s"] == 120.0  # waited since its deadline


def test_a_check_in_stuck_in_a_stalled_partition_raises_nothing():
    """The check-in reached Kafka before the deadline, on a partition whose worker died;
    read after the deadline, it answers the visit, and nothing is raised."""
    h = _waiting()
    _read(h, LATE + 30, ("ecm.roster", 0), ("ecm.events", 0))
    h.at(LATE + 60)
    h.events(event(at=LATE - 10), stamps=[LATE - 9])
    _read(h, LATE + 90)
    h.at(LATE + 100)
    assert h.escalations == []


def test_a_check_out_delivered_after_its_deadline_still_raises_no_check_out():
    """On time by the device, but it reached Kafka after the deadline: the duty desk had
    no check-out then. Read while the deadline waits for its input (a backlog after a
    hold), it proves the deadline passed without it: raised as of the deadline and
    resolved by the check-out at once, and once only."""
    h = _waiting()
    due = T0 + 1800 + 1800  # scheduled end + the no-check-out threshold
    h.events(event(at=T0 + 60), stamps=[T0 + 61])
    _read(h, due - 100)
    h.at(due + 50)
    h.events(event("check_out", at=due - 5), stamps=[due + 40])
    assert _attendance(h) == [("v1:no_check_out", "open"), ("v1:no_check_out", "resolved")]
    assert h.by_id("v1:no_check_out")["evidence"]["workers_not_checked_out"] == ["w1"]
    _read(h, due + 60)
    h.at(due + 61)
    assert len(_attendance(h)) == 2


def test_a_check_out_read_after_its_deadline_but_there_in_time_raises_nothing():
    h = _waiting()
    due = T0 + 1800 + 1800
    h.events(event(at=T0 + 60), stamps=[T0 + 61])
    _read(h, due - 100)
    h.at(due + 50)
    h.events(event("check_out", at=due - 5), stamps=[due - 4])
    _read(h, due + 60)
    h.at(due + 61)
    assert _attendance(h) == []


def test_the_retroactive_no_check_out_is_judged_by_when_the_check_out_reached_kafka():
    """No sweep held: the check-out is read after the deadline, before the sweep."""
    h = Harness()
    h.roster(visit())
    due = T0 + 1800 + 1800
    h.events(event(at=T0 + 60))
    h.clock.set(due + 30)
    h.events(event("check_out", at=due - 5), stamps=[due + 20])
    assert _attendance(h) == [("v1:no_check_out", "open"), ("v1:no_check_out", "resolved")]


def test_grace_for_an_unknown_visit_waits_for_the_roster_input():
    h = Harness()
    h.detector.await_inputs(INPUTS)
    grace = h.settings.unscheduled_grace_s
    h.events(event(at=T0, visit_id="v9"), stamps=[T0])
    _read(h, T0 + grace - 10)
    h.at(T0 + grace + 30)
    assert h.rejections == []  # the roster record may still be in a stalled partition
    h.roster(visit("v9"))
    _read(h, T0 + grace + 60)
    h.at(T0 + grace + 61)
    assert h.rejections == [] and h.detector.visits["v9"].checkins


def test_a_deadline_before_a_cancellation_stands_though_the_cancellation_is_read_first():
    """The late deadline waits for a stalled input; the cancellation, which reached Kafka
    after it, is read meanwhile. Late was due before the cancellation: raised as of its
    deadline, and resolved by the cancellation at once. Missed, due after, is not."""
    h = _waiting()
    _read(h, LATE - 1)
    h.at(LATE + 60)
    assert h.escalations == []
    h.feed(("roster", visit(status="cancelled")), stamps=[LATE + 30])
    assert h.escalations == []
    _read(h, T0 + 4000)
    h.at(T0 + 4000)
    assert h.statuses() == [("v1:late", "open"), ("v1:late", "resolved")]
    assert h.by_id("v1:late", "resolved")["resolution"] == "cancelled"


def test_a_cancellation_before_the_deadline_silences_it():
    h = _waiting()
    _read(h, LATE - 1)
    h.at(LATE - 100)
    h.feed(("roster", visit(status="cancelled")), stamps=[LATE - 50])
    _read(h, T0 + 4000)
    h.at(T0 + 4000)
    assert h.escalations == []
