"""Rules decided when an event arrives: location, worker, durations, matching."""

from datetime import UTC, datetime

from stream.clock import ManualClock
from stream.contract import Source
from stream.detector import PartitionDetector
from tests.factories import T0, event, north_of_home, visit
from tests.unit.stream.harness import Harness


def _kinds(h):
    return [(e["kind"], e["status"]) for e in h.escalations]


def test_gps_check_in_far_outside_is_a_location_mismatch():
    h = Harness()
    h.roster(visit())
    lat, lon = north_of_home(1000)
    h.events(event(at=T0, lat=lat, lon=lon, accuracy_m=10))
    esc = h.by_id("v1:location_mismatch")
    assert esc["evidence"]["distance_to_fence_m"] == 800.0
    assert esc["evidence"]["margin_m"] == 16.2
    assert esc["recommended_route"] == "review"


def test_gps_poor_accuracy_near_boundary_is_unverified_not_mismatch():
    h = Harness()
    h.roster(visit())
    lat, lon = north_of_home(260)  # 60 m outside a 200 m fence
    h.events(event(at=T0, lat=lat, lon=lon, accuracy_m=80))  # 95% radius ~130 m
    assert _kinds(h) == [("location_unverified", "open")]
    assert h.by_id("v1:location_unverified")["evidence"]["reason"] == "accuracy_too_poor"


def test_gps_inside_raises_nothing_and_missing_accuracy_is_assumed():
    h = Harness()
    h.roster(visit())
    lat, lon = north_of_home(20)
    h.events(event(at=T0, lat=lat, lon=lon, accuracy_m=None))
    assert h.escalations == []


def test_polygon_geofence_with_hole():
    lat0, lon0 = north_of_home(0)
    d = 0.002
    outer = [[lon0 - d, lat0 - d], [lon0 + d, lat0 - d], [lon0 + d, lat0 + d],
             [lon0 - d, lat0 + d], [lon0 - d, lat0 - d]]
    h = 0.0005
    hole = [[lon0 - h, lat0 - h], [lon0 - h, lat0 + h], [lon0 + h, lat0 + h],
            [lon0 + h, lat0 - h], [lon0 - h, lat0 - h]]
    hn = Harness()
    hn.roster(visit(geofence={"type": "Polygon", "coordinates": [outer, hole]}))
    hn.events(event(at=T0, lat=lat0, lon=lon0, accuracy_m=5))  # in the hole: outside
    assert _kinds(hn) == [("location_mismatch", "open")]
    assert hn.by_id("v1:location_mismatch")["evidence"]["fence"] == "polygon"


def test_telephony_from_unknown_number_is_unverified():
    h = Harness()
    h.roster(visit())
    h.events(event(at=T0, method="telephony", caller_number="07700 900123"))
    assert h.by_id("v1:location_unverified")["evidence"]["reason"] == "caller_not_on_roster"


def test_telephony_from_client_landline_in_another_format_is_verified():
    h = Harness()
    h.roster(visit())
    h.events(event(at=T0, method="telephony", caller_number="01603-000-111"))
    assert h.escalations == []


def test_unknown_nfc_tag_is_unverified_and_known_tag_is_fine():
    h = Harness()
    h.roster(visit(), visit("v2", client_id="c2"))
    h.events(event(at=T0, method="nfc", tag_id="tag-9"),
             event(at=T0, method="qr", tag_id="tag-1", visit_id="v2", client_id="c2"))
    assert [e["escalation_id"] for e in h.escalations] == ["v1:location_unverified"]


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
    h.events(event("check_out", at=T0 + 1200))
    h.events(event(at=T0 + 5))
    assert _kinds(h) == [("shortened", "open")]
    h.at(T0 + 20_000)
    assert _kinds(h) == [("shortened", "open")]


def test_event_without_visit_id_matches_the_workers_visit_nearest_in_time():
    h = Harness()
    h.roster(visit("am", start=T0), visit("pm", start=T0 + 6 * 3600),
             visit("other", start=T0 + 600, workers=("w2",)))
    h.events(event(at=T0 + 6 * 3600 - 300, visit_id=None))
    assert h.detector.visits["pm"].checkins["w1"].occurred == T0 + 6 * 3600 - 300
    assert not h.detector.visits["am"].checkins


def test_event_without_visit_id_for_another_workers_visit_is_wrong_worker():
    h = Harness()
    h.roster(visit(workers=("w2",)))
    h.events(event(at=T0, visit_id=None, worker_id="w1"))
    assert _kinds(h) == [("wrong_worker", "open")]


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
    assert book.open_count() == 1 and h.detector.deadlines_pending == 0
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
    assert h.detector.deadlines_pending == 0  # forgetting entries are not deadlines
    h.events(event(at=T0, visit_id="nope", worker_id="w3", event_id="gone0"))
    assert h.reasons()[-1] == "duplicate_event"
    h.at(T0 + 7200)  # a resend of either would still be accepted
    assert "gone0" in h.detector.event_index and "gone1" in h.detector.event_index
    h.at(T0 + 1 + 7200 + 1)
    assert h.detector.event_index == {}
    h.events(event(at=T0, visit_id="nope", worker_id="w3", event_id="gone0"))
    assert h.reasons()[-1] == "clock_too_old"


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
    assert d.client_visits("c1") == ("v1", "v2", "v3")
    assert d.client_visits("c2") == ("solo",)
    assert d.client_visits("nobody") == ()
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
    assert d.client_visits("c1") == ("v2", "v3")
    assert d.client_visits("c2") == ()
    assert "c2" not in d.by_client
    h.at(T0 + 4 * hour + end)
    assert d.client_visits("c1") == ("v3",)
    h.at(T0 + 8 * hour + end)
    assert d.client_visits("c1") == () and d.by_client == {}


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
