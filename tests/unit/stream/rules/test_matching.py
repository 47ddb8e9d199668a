"""Which visit an event belongs to, what waits for a roster, and what is rejected on the
way (stream/rules/matching.py)."""


from stream.contract import Source
from stream.timeutil import format_instant
from tests.factories import T0, event, north_of_home, visit
from tests.unit.stream.harness import Harness, Log, partition_state


def test_event_without_visit_id_matches_the_workers_visit_nearest_in_time():
    h = Harness()
    h.roster(visit("am", start=T0), visit("pm", start=T0 + 6 * 3600),
             visit("other", start=T0 + 600, workers=("w2",)))
    h.events(event(at=T0 + 6 * 3600 - 300, visit_id=None))
    assert h.detector.visits["pm"].checkins["w1"].occurred == T0 + 6 * 3600 - 300
    assert not h.detector.visits["am"].checkins


def test_late_roster_within_grace_matches_the_waiting_event():
    h = Harness()
    h.events(event(at=T0, visit_id=None))
    h.at(T0 + 60)
    h.roster(visit())
    h.at(T0 + 3000)
    assert h.escalations == []
    assert "w1" in h.detector.visits["v1"].checkins


def test_unknown_visit_id_is_dead_lettered_after_grace():
    h = Harness()
    h.events(event(at=T0, visit_id="nope"))
    h.at(T0 + 121)
    assert h.reasons() == ["unknown_visit"]
    assert h.escalations == []


def test_an_expired_events_id_is_held_against_resends_until_it_is_too_old():
    """An event that waited in vain keeps its id in the event index, so that sending it
    again is a duplicate, not a second wait and a second dead letter; once it is older
    than ECM_MAX_EVENT_AGE_S a resend is refused as too old anyway, and the id goes."""
    h = Harness(max_event_age_s=7200)
    for i, client in enumerate(("c1", "c7")):
        h.events(event(at=T0 + i, visit_id="nope" if i == 0 else None, client_id=client,
                       worker_id="w3", event_id=f"gone{i}"))
    h.at(T0 + 121)
    assert h.reasons() == ["unknown_visit"] and len(h.escalations) == 1
    # The unscheduled escalation's case deadline; forgetting entries are not deadlines.
    assert h.detector.deadlines_pending == 1
    h.events(event(at=T0, visit_id="nope", worker_id="w3", event_id="gone0"))
    assert h.reasons()[-1] == "duplicate_event"
    h.at(T0 + 7200)  # a resend of either would still be accepted
    assert "gone0" in h.detector.state.event_index and "gone1" in h.detector.state.event_index
    h.at(T0 + 1 + 7200 + 1)
    assert h.detector.state.event_index == {}
    h.events(event(at=T0, visit_id="nope", worker_id="w3", event_id="gone0"))
    assert h.reasons()[-1] == "clock_too_old"


def test_duplicate_event_id_is_dead_lettered_but_a_replay_is_not():
    h = Harness()
    h.roster(visit())
    doc = event(at=T0, event_id="same")
    h.clock.set(T0)
    src = Source("ecm.events", 0, 42, 3)
    h.feed(("event", doc, src))
    h.feed(("event", doc, src))  # the same message again after a rebalance: a replay
    assert h.rejections == [] and h.last.replayed == 1
    h.feed(("event", doc, Source("ecm.events", 1, 7, 0)))  # sent again by a gateway
    assert h.reasons() == ["duplicate_event"]
    assert h.escalations == []


def test_event_for_another_clients_visit_is_rejected():
    h = Harness()
    h.roster(visit())
    h.events(event(at=T0, client_id="c2"))
    assert h.reasons() == ["client_mismatch"]


def test_clock_in_the_future_and_too_old_are_rejected():
    h = Harness(start=T0)
    h.feed(("event", event(at=T0 + 301)), ("event", event(at=T0 - 3 * 86400)))
    assert h.reasons() == ["clock_in_future", "clock_too_old"]


def test_invalid_records_are_rejected_with_reasons_and_raw_bytes():
    h = Harness()
    bad_visit = visit(scheduled_end="2026-11-18T08:00:00Z")
    h.feed(("roster", bad_visit), ("event", {"event_id": "x"}),
           ("event", event(at=T0, lat=95.0)))
    assert h.reasons() == ["end_before_start", "missing_field", "invalid_coordinates"]
    assert b'"visit_id":"v1"' in h.rejections[0].raw


def test_check_out_without_visit_id_closes_the_visit_the_worker_is_in():
    # Running 25 minutes late, the worker checks out of the first visit inside the second
    # visit's scheduled window; the check-out still belongs to the first.
    h = Harness()
    h.roster(visit("first", start=T0, minutes=30), visit("second", start=T0 + 2700, minutes=30))
    h.events(event(at=T0 + 1500, visit_id=None))
    h.events(event("check_out", at=T0 + 2820, visit_id=None))
    assert h.detector.visits["first"].checkouts["w1"].occurred == T0 + 2820
    assert not h.detector.visits["second"].checkouts


def test_a_clients_visits_are_indexed_in_booking_order_until_each_is_forgotten():
    h = Harness()
    d = h.detector
    hour = 3600.0
    h.roster(visit("v1", start=T0), visit("v2", start=T0 + 4 * hour))
    h.roster(visit("v3", start=T0 + 8 * hour))
    h.roster(visit("solo", client_id="c2", start=T0))
    assert d.state.client_visits("c1") == ("v1", "v2", "v3")
    assert d.state.client_visits("c2") == ("solo",)
    assert d.state.client_visits("nobody") == ()
    # Visits of the same worker share one tuple of worker ids.
    assert d.visits["v1"].visit.worker_ids is d.visits["solo"].visit.worker_ids
    # An event that names no visit is matched through the index: the one nearest in time.
    h.events(event(at=T0 + 4 * hour + 60, visit_id=None))
    assert d.visits["v2"].checkins and not d.visits["v1"].checkins
    h.events(event(at=T0 + 60, visit_id=None, client_id="c2"))
    assert d.visits["solo"].checkins
    # Each visit is forgotten 36 h after its end, and leaves the index as it goes.
    end = 30 * 60 + 36 * hour + 1
    h.at(T0 + end)
    assert d.state.client_visits("c1") == ("v2", "v3")
    assert d.state.client_visits("c2") == ()
    assert "c2" not in d.state.by_client
    h.at(T0 + 4 * hour + end)
    assert d.state.client_visits("c1") == ("v3",)
    h.at(T0 + 8 * hour + end)
    assert d.state.client_visits("c1") == () and d.state.by_client == {}


def test_worker_ids_are_shared_between_visits_and_the_marks_they_hold():
    h = Harness()
    h.roster(visit("v1", workers=("w-7",)), visit("v2", client_id="c2", workers=("w-7",)))
    # A first check-in inside its fence (the short path), one outside (the full rules),
    # each decoded from its own bytes, so that each has its own string objects.
    h.events(event(at=T0, worker_id="w-7"))
    lat, lon = north_of_home(1000)
    h.events(event(at=T0, visit_id="v2", client_id="c2", worker_id="w-7", lat=lat, lon=lon))
    h.events(event("check_out", at=T0 + 600, visit_id="v2", client_id="c2", worker_id="w-7"))
    a, b = h.detector.visits["v1"], h.detector.visits["v2"]
    assert a.visit.worker_ids is b.visit.worker_ids
    (held_a,), (held_b,), (out_b,) = a.checkins.keys(), b.checkins.keys(), b.checkouts.keys()
    assert held_a is held_b is out_b is a.visit.worker_ids[0]
    assert h.by_id("v2:location_mismatch")


def _late_pair(h: Harness, *, check_in_names: str | None) -> None:
    """Two visits of one client by one worker, 28 minutes apart; the worker so late for
    the first that the check-in falls in the second's window; the check-out names the
    first."""
    h.roster(visit("first", start=T0), visit("second", start=T0 + 28 * 60))
    h.events(event(at=T0 + 36 * 60, visit_id=check_in_names, event_id="in"))
    h.at(T0 + 59 * 60)  # the second's late and missed deadlines pass while it holds "in"
    h.events(event("check_out", at=T0 + 61 * 60, visit_id="first", event_id="out"))


def test_a_check_out_naming_the_first_visit_takes_back_a_check_in_matched_to_the_next():
    """The check-in named no visit and went to the visit nearest in time, the second; the
    check-out names the first, which its worker never checked into: the check-in was the
    first's. The second, left, is late and missed as of its own deadlines."""
    h = Harness()
    _late_pair(h, check_in_names=None)
    d = h.detector
    first, second = d.visits["first"], d.visits["second"]
    assert first.checkins["w1"].event_id == "in" and first.checkouts["w1"].event_id == "out"
    assert not second.checkins and second.events == ()
    assert set(first.events) == {"in", "out"} and d.checked_in == 1
    h.at(T0 + 62 * 60)
    # Out after the first's no-check-out deadline; two missed visits: a safeguarding review.
    assert {(e["visit_id"], e["kind"]) for e in h.escalations if e["status"] == "open"} == {
        ("first", "late"), ("first", "missed"), ("first", "no_check_out"),
        ("second", "late"), ("second", "missed"),
        ("safeguarding:c1:second:missed", "safeguarding_review")}
    late = h.by_id(next(e["escalation_id"] for e in h.escalations
                        if e["visit_id"] == "second" and e["kind"] == "late"))
    assert late["deadline"] == format_instant(T0 + 43 * 60)
    h.at(T0 + 4 * 3600)  # nobody checked out of the second: nobody was in it
    assert not any(e["visit_id"] == "second" and e["kind"] in ("no_check_out", "extended")
                   for e in h.escalations)
    assert h.record("first")["outcome"] == "attended"
    assert h.record("second")["outcome"] == "missed"


def test_a_check_out_naming_another_visit_leaves_a_check_in_that_named_its_own():
    """A check-in that named its visit stays with it, whatever the check-out names."""
    h = Harness()
    _late_pair(h, check_in_names="second")
    d = h.detector
    assert d.visits["second"].checkins["w1"].event_id == "in"
    assert not d.visits["first"].checkins and d.visits["first"].checkouts["w1"].event_id == "out"


def test_a_check_in_taken_back_replays_from_the_changelog_as_it_was_applied():
    h = Harness()
    log = Log(h)
    h.roster(visit("first", start=T0), visit("second", start=T0 + 28 * 60))
    log.publish()
    h.events(event(at=T0 + 36 * 60, visit_id=None, event_id="in"))
    log.publish()
    h.at(T0 + 59 * 60)
    log.publish()
    h.events(event("check_out", at=T0 + 61 * 60, visit_id="first", event_id="out"))
    h.at(T0 + 62 * 60)
    log.publish()
    copy = log.replay(0)
    assert partition_state(copy) == partition_state(h.detector)


def test_a_no_check_out_raised_on_the_visit_that_held_the_check_in_is_answered():
    """The check-out came after the second's no-check-out deadline, which was raised while
    the second held the check-in: the worker has checked out, of the first."""
    h = Harness()
    h.roster(visit("first", start=T0), visit("second", start=T0 + 28 * 60))
    h.events(event(at=T0 + 36 * 60, visit_id=None, event_id="in"))
    h.at(T0 + 90 * 60)
    eid = next(e["escalation_id"] for e in h.escalations
               if e["visit_id"] == "second" and e["kind"] == "no_check_out")
    # The check-out reached Kafka at 95 minutes and is read a minute later: the answer
    # counts from when it reached Kafka, as every answer does (docs/rules.md, "Arrivals").
    h.clock.set(T0 + 96 * 60)
    h.events(event("check_out", at=T0 + 95 * 60, visit_id="first", event_id="out"),
             stamps=[T0 + 95 * 60])
    resolved = h.by_id(eid, "resolved")
    assert resolved["resolution"] == "checked_out"
    assert resolved["evidence"]["answered_at"] == format_instant(T0 + 95 * 60)
    assert h.detector.visits["first"].checkins["w1"].event_id == "in"


def test_a_check_in_naming_no_visit_goes_where_its_named_check_out_came_first():
    """The phone sent the check-out, naming the first visit, before the check-in that named
    none: the check-in is the first's, not the nearer second's."""
    h = Harness()
    h.roster(visit("first", start=T0), visit("second", start=T0 + 28 * 60))
    h.events(event("check_out", at=T0 + 61 * 60, visit_id="first", event_id="out"))
    h.events(event(at=T0 + 36 * 60, visit_id=None, event_id="in"))
    d = h.detector
    assert d.visits["first"].checkins["w1"].event_id == "in"
    assert not d.visits["second"].checkins


def test_a_check_in_naming_no_visit_passes_over_a_visit_its_worker_has_closed():
    """The worker is booked on two overlapping visits of one client: done with the long
    one, the check-in that named none, just after it ended, is for the other, though the
    long one is nearer in time."""
    h = Harness()
    h.roster(visit("long", start=T0, minutes=60), visit("short", start=T0 + 13 * 60))
    h.events(event(at=T0 - 180, visit_id="long", event_id="in1"))
    h.events(event("check_out", at=T0 + 59 * 60, visit_id="long", event_id="out1"))
    h.events(event(at=T0 + 62 * 60, visit_id=None, event_id="in2"))
    d = h.detector
    assert d.visits["short"].checkins["w1"].event_id == "in2"
    assert d.visits["long"].checkins["w1"].event_id == "in1"
