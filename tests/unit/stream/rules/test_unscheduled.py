"""unscheduled: an event that matched no visit within its grace (stream/rules/unscheduled.py)."""

from datetime import UTC, datetime

import orjson

from stream.clock import ManualClock
from stream.rules.detector import PartitionDetector
from tests.factories import T0, event
from tests.unit.stream.harness import Harness
from tests.unit.stream.inprocess import Worker


def test_unscheduled_after_grace_period():
    h = Harness()
    h.events(event(at=T0, visit_id=None, client_id="c7", worker_id="w3"))
    h.at(T0 + 119)
    assert h.escalations == []
    h.at(T0 + 120)
    esc = h.by_id("adhoc:c7:w3:20261118:unscheduled")
    assert esc["kind"] == "unscheduled" and esc["scheduled_start"] is None
    h.events(event("check_out", at=T0 + 1800, visit_id=None, client_id="c7", worker_id="w3"))
    h.at(T0 + 2000)
    assert len(h.escalations) == 1


def test_an_unscheduled_record_is_forgotten_once_no_event_of_its_day_can_come():
    """Its id is per client, worker and day: once the day's events are older than
    ECM_MAX_EVENT_AGE_S (rejected as clock_too_old) and the last of them has waited out its
    grace, the record can go, and its open escalation leaves the gauge, as a rostered
    visit's do when it is forgotten."""
    h = Harness(max_event_age_s=7200)
    h.events(event(at=T0, visit_id=None, client_id="c7", worker_id="w3"))
    h.at(T0 + 120)
    book = h.detector.book
    # Its case's owner deadline (stream/rules/cases.py) is the one deadline left.
    assert book.open_count() == 1 and h.detector.deadlines_pending == 1
    day_end = datetime(2026, 11, 19, tzinfo=UTC).timestamp()
    # The day's last event, accepted at the last moment, waits for a roster record.
    h.events(event(at=day_end - 1, visit_id=None, client_id="c7", worker_id="w3",
                   event_id="last"))
    h.clock.set(day_end - 1 + 7200)
    h.events(event(at=day_end - 1, visit_id=None, client_id="c7", worker_id="w3",
                   event_id="later"))
    assert "later" in h.detector.pending
    h.at(day_end - 1 + 7200 + 120)
    assert book.known("adhoc:c7:w3:20261118", "unscheduled")
    h.at(day_end + 7200 + 120 + 1)
    assert book.records == {} and book.open_count() == 0
    assert h.statuses() == [("adhoc:c7:w3:20261118:unscheduled", "open")]  # nothing more


def test_a_rebuilt_partition_forgets_unscheduled_records_when_due():
    h = Harness(max_event_age_s=7200)
    h.events(event(at=T0, visit_id=None, client_id="c7", worker_id="w3"))
    h.at(T0 + 120)
    day_end = datetime(2026, 11, 19, tzinfo=UTC).timestamp()
    copy = PartitionDetector(0, h.settings, ManualClock(T0 + 200))
    copy.restore([h.detector.take_delta()], h.escalations)
    assert copy.book.open_count() == 1
    copy.clock.set(day_end + 7200 + 120 + 1)
    assert copy.sweep().escalations == [] and copy.book.records == {}


def test_an_event_judged_unscheduled_is_counted_accepted():
    # Every record is accepted or dead-lettered: one that names no visit and ends as an
    # unscheduled visit's evidence is accepted (found by fuzzing: it was neither).
    w = Worker(start=T0)
    w.keyed("ecm.events", orjson.dumps(event(at=T0, visit_id=None, client_id="c7",
                                             worker_id="w3")), "c7")
    assert w.accepted["event"] == 0 and not w.rejections  # waiting for a roster
    w.sweep(T0 + 121)
    assert [e.kind for e in w.escalations] == ["unscheduled"]
    assert w.accepted["event"] == 1 and not w.rejections
