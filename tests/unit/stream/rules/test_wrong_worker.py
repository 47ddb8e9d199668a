"""wrong_worker: a check-in by a worker the visit does not roster, and the roster
updates that answer it (stream/rules/attendance.py)."""


from tests.factories import T0, event, visit
from tests.unit.stream.harness import Harness


def _kinds(h):
    return [(e["kind"], e["status"]) for e in h.escalations]


def test_wrong_worker_raised_and_counts_as_attendance():
    h = Harness()
    h.roster(visit())
    h.events(event(at=T0, worker_id="w9"))
    assert h.by_id("v1:wrong_worker")["evidence"]["worker_id"] == "w9"
    h.at(T0 + 3000)
    assert _kinds(h) == [("wrong_worker", "open")]


def test_reassignment_before_check_in_prevents_wrong_worker():
    h = Harness()
    h.roster(visit())
    h.roster(visit(workers=("w9",)))
    h.events(event(at=T0, worker_id="w9"))
    assert h.escalations == []


def test_reassignment_after_check_in_resolves_wrong_worker():
    h = Harness()
    h.roster(visit())
    h.events(event(at=T0, worker_id="w9"))
    h.roster(visit(workers=("w9",)))
    assert _kinds(h) == [("wrong_worker", "open"), ("wrong_worker", "resolved")]
    assert h.by_id("v1:wrong_worker", "resolved")["resolution"] == "reassigned"


def test_reassignment_while_late_moves_the_question_to_the_new_worker():
    h = Harness()
    h.roster(visit())
    h.at(T0 + 950)
    h.roster(visit(workers=("w2",)))
    h.events(event(at=T0 + 1000, worker_id="w2"))
    assert _kinds(h) == [("late", "open"), ("late", "resolved")]


def test_event_without_visit_id_for_another_workers_visit_is_wrong_worker():
    h = Harness()
    h.roster(visit(workers=("w2",)))
    h.events(event(at=T0, visit_id=None, worker_id="w1"))
    assert _kinds(h) == [("wrong_worker", "open")]
