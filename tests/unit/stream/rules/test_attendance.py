"""late, missed and no_check_out: raised by the sweep, resolved by what arrives later."""

from tests.factories import T0, event, visit
from tests.unit.stream.harness import Harness


def test_nothing_before_the_late_deadline():
    h = Harness()
    h.roster(visit())
    h.at(T0 + 899.9)
    assert h.escalations == []


def test_late_then_missed_raised_by_timer_without_any_event():
    h = Harness()
    h.roster(visit())
    h.at(T0 + 900.0)
    assert h.statuses() == [("v1:late", "open")]
    late = h.by_id("v1:late")
    assert late["deadline"] == "2026-11-18T11:21:40.000Z"
    assert late["detected_at"] == late["deadline"]
    assert late["evidence"]["workers_absent"] == ["w1"]
    h.at(T0 + 1800.0)
    assert h.statuses() == [("v1:late", "open"), ("v1:missed", "open")]


def test_sweeping_twice_never_opens_twice():
    h = Harness()
    h.roster(visit())
    h.at(T0 + 901)
    h.at(T0 + 902)
    h.roster(visit())  # the same roster again, e.g. a replay
    h.at(T0 + 903)
    assert h.statuses() == [("v1:late", "open")]


def test_check_in_after_late_resolves_with_lateness():
    h = Harness()
    h.roster(visit())
    h.at(T0 + 1000)
    h.events(event(at=T0 + 1000))
    assert h.statuses() == [("v1:late", "open"), ("v1:late", "resolved")]
    resolved = h.by_id("v1:late", "resolved")
    assert resolved["resolution"] == "arrived"
    assert resolved["evidence"]["lateness_s"] == 1000.0
    h.at(T0 + 4000)
    assert ("v1:missed", "open") not in h.statuses()


def test_check_in_after_missed_resolves_both():
    h = Harness()
    h.roster(visit())
    h.at(T0 + 1900)
    h.events(event(at=T0 + 1900))
    assert h.statuses() == [("v1:late", "open"), ("v1:missed", "open"),
                            ("v1:late", "resolved"), ("v1:missed", "resolved")]


def test_on_time_check_in_raises_nothing():
    h = Harness()
    h.roster(visit())
    h.events(event(at=T0 + 60))
    h.at(T0 + 60)
    h.events(event("check_out", at=T0 + 1800))
    h.at(T0 + 1800)
    h.at(T0 + 10_000)
    assert h.escalations == []


def test_late_arrival_inside_one_sweep_interval_is_still_late():
    # The check-in is stamped after the deadline but reaches the worker before its sweep.
    h = Harness()
    h.roster(visit())
    h.clock.set(T0 + 900.4)
    h.events(event(at=T0 + 900.2))
    assert h.statuses() == [("v1:late", "open"), ("v1:late", "resolved")]
    assert h.by_id("v1:late")["deadline"] == "2026-11-18T11:21:40.000Z"


def test_offline_phone_uploading_on_time_check_in_resolves_as_delivered_late():
    h = Harness()
    h.roster(visit())
    h.at(T0 + 1000)
    h.events(event(at=T0 + 120))  # stamped on time, delivered 880 s later
    resolved = h.by_id("v1:late", "resolved")
    assert resolved["evidence"]["lateness_s"] == 120.0
    assert resolved["evidence"]["delivery_delay_s"] == 880.0


def test_per_visit_thresholds_override_defaults():
    h = Harness()
    h.roster(visit(late_after_s=300, missed_after_s=600))
    h.at(T0 + 300)
    h.at(T0 + 600)
    assert h.statuses() == [("v1:late", "open"), ("v1:missed", "open")]


def test_default_thresholds_come_from_settings():
    h = Harness(late_after_s=60, missed_after_s=120)
    h.roster(visit())
    h.at(T0 + 60)
    assert h.statuses() == [("v1:late", "open")]


def test_double_up_needs_both_workers():
    h = Harness()
    h.roster(visit(workers=("w1", "w2")))
    h.events(event(at=T0 + 10, worker_id="w1"))
    h.at(T0 + 900)
    late = h.by_id("v1:late")
    assert late["evidence"]["workers_absent"] == ["w2"]
    assert late["evidence"]["workers_present"] == ["w1"]
    h.events(event(at=T0 + 1000, worker_id="w2"))
    assert h.by_id("v1:late", "resolved")["evidence"]["lateness_s"] == 1000.0


def test_no_check_out_raised_and_resolved():
    h = Harness()
    h.roster(visit())
    h.events(event(at=T0))
    h.at(T0 + 1800 + 1799)
    assert h.escalations == []
    h.at(T0 + 1800 + 1800)
    noc = h.by_id("v1:no_check_out")
    assert noc["evidence"]["workers_not_checked_out"] == ["w1"]
    h.events(event("check_out", at=T0 + 3700))
    assert h.by_id("v1:no_check_out", "resolved")["resolution"] == "checked_out"


def test_a_check_out_after_a_deadline_no_sweep_saw_raises_and_resolves_it():
    """A worker that was down (or held its sweep while catching up) reads the late check-out
    before it sweeps: the no-check-out rule was true at its deadline all the same."""
    h = Harness()
    h.roster(visit())
    h.events(event(at=T0))
    h.events(event("check_out", at=T0 + 1800 + 1800 + 600))  # no sweep since the check-in
    noc = h.by_id("v1:no_check_out")
    assert noc["deadline"] == h.by_id("v1:no_check_out", "resolved")["deadline"]
    assert noc["evidence"]["workers_not_checked_out"] == ["w1"]
    assert h.by_id("v1:no_check_out", "resolved")["resolution"] == "checked_out"
    h.at(T0 + 50_000)  # its timer, when it falls due, raises nothing more
    assert [e["status"] for e in h.escalations if e["kind"] == "no_check_out"] == [
        "open", "resolved"]
    # Checked out before the deadline, read after it: nothing to raise.
    h.roster(visit("v2", client_id="c2"))
    h.events(event(at=T0, visit_id="v2", client_id="c2"))
    h.events(event("check_out", at=T0 + 1800 + 1700, visit_id="v2", client_id="c2"))
    assert [e["escalation_id"] for e in h.escalations].count("v2:no_check_out") == 0


def test_no_check_out_not_raised_for_a_visit_nobody_attended():
    h = Harness()
    h.roster(visit())
    h.at(T0 + 50_000)
    assert sorted(e["kind"] for e in h.escalations) == ["late", "missed"]


def test_visit_booked_after_its_deadlines_is_raised_at_the_next_sweep():
    h = Harness(start=T0 + 2000)
    h.roster(visit())
    h.at(T0 + 2000.5)
    assert h.statuses() == [("v1:late", "open"), ("v1:missed", "open")]


def test_a_visit_s_timers_are_its_deadlines_in_timeline_order():
    from stream.rules.timers import TimerKind as K

    timeline = {False: (K.LATE, K.MISSED, K.NO_CHECK_OUT, K.FORGET), True: (K.FORGET,)}
    h = Harness()
    h.roster(visit("v1"), visit("v2", late_after_s=120.5, missed_after_s=600,
                                no_checkout_after_s=7200),
             visit("v3", status="cancelled"))
    rules = h.detector.attendance
    for vid in ("v1", "v2", "v3"):
        v = h.detector.visits[vid].visit
        kinds = timeline[v.cancelled]
        assert rules.timers_of(v) == [(rules.due(v, kind), kind) for kind in kinds]
    v2 = h.detector.visits["v2"].visit
    assert [due - v2.start for due, _ in rules.timers_of(v2)[:2]] == [120.5, 600.0]


def test_a_visit_s_armed_timer_is_the_first_of_its_timeline():
    """_schedule arms lateness without building the timeline when it comes first; every
    other order (missed first, a tie, a visit ending before lateness, a cancellation)
    arms the timeline's first."""
    h = Harness()
    h.roster(visit("v1"), visit("v2", missed_after_s=300),
             visit("v3", late_after_s=600, missed_after_s=600),
             visit("v4", minutes=5, late_after_s=3600, no_checkout_after_s=60),
             visit("v5", status="cancelled"))
    d = h.detector
    armed = {e.key: (e.due, e.kind) for e in d.timers}
    assert armed == {vid: min(d.attendance.timers_of(vs.visit)) for vid, vs in d.visits.items()}
    assert [armed[v][1] for v in ("v1", "v2", "v3", "v4", "v5")] == [
        "late", "missed", "late", "no_check_out", "forget"]


def test_a_storm_of_deadlines_is_swept_in_slices_each_once():
    """5,000 visits late at the same instant: a sweep takes at most its limit, says more
    is due, and the slices together raise each once, in deadline order."""
    h = Harness()
    h.roster(*[visit(f"v{i}", client_id=f"c{i}") for i in range(5000)])
    h.clock.set(T0 + 900)
    sizes = []
    while True:
        out = h.detector.sweep(limit=2000)
        h.escalations += [{"escalation_id": e.escalation_id} for e in out.escalations]
        sizes.append(len(out.escalations))
        if not h.detector.more_due():
            break
    assert sizes == [2000, 2000, 1000]
    ids = [e["escalation_id"] for e in h.escalations]
    assert len(ids) == len(set(ids)) == 5000
    assert h.detector.held_since() is None
