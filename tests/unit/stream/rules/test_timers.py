"""The timer heap (stream/rules/timers.py): order, duplicates, and the deadlines gauge."""

from stream.rules.timers import Timer, TimerKind, Timers


def test_entries_fall_due_in_instant_then_kind_then_key_order():
    t = Timers()
    t.push(20.0, TimerKind.LATE, "b")
    t.push(10.0, TimerKind.MISSED, "a")
    t.push(20.0, TimerKind.GRACE, "z")
    t.push(20.0, TimerKind.LATE, "a")
    t.push(30.0, TimerKind.FORGET, "a")
    assert [(e.due, e.kind, e.key) for e in t.due(20.0)] == [
        (10.0, "missed", "a"), (20.0, "grace", "z"), (20.0, "late", "a"), (20.0, "late", "b")]
    assert t.next_due() == 30.0 and len(t) == 1


def test_the_same_entry_armed_twice_falls_due_once():
    t = Timers()
    for _ in range(3):
        t.push(5.0, TimerKind.FORGET, "v1")
    assert list(t.due(5.0)) == [Timer(5.0, TimerKind.FORGET, "v1")]
    assert t.deadlines == 0 and t.next_due() is None


def test_forgetting_entries_are_not_counted_as_deadlines():
    t = Timers()
    t.push_deadline(1.0, TimerKind.LATE, "v1")
    t.push(2.0, TimerKind.GRACE, "e1")
    t.push(3.0, TimerKind.FORGET, "v1")
    t.push(4.0, TimerKind.ADHOC, "adhoc:c:w:20260101")
    t.push(5.0, TimerKind.SEEN, "e2")
    assert t.deadlines == 2
    assert [e.kind for e in t.due(3.0)] == ["late", "grace", "forget"]
    assert t.deadlines == 0 and len(t) == 2
