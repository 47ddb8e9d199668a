"""Roster and events in through kafka-python, a real worker process, escalations out."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from stream.contract.records import lifecycle
from stream.timeutil import parse_instant
from tests.cluster import Reader, produce
from tests.factories import event, north_of_home, visit

pytestmark = pytest.mark.integration

FAST = {"late_after_s": 4, "missed_after_s": 8, "no_checkout_after_s": 3600}


def _roster(now: float) -> list[dict]:
    s = now + 1
    far = north_of_home(2000)
    return [
        visit("on-time", client_id="c1", start=s, **FAST),
        visit("late", client_id="c2", start=s, **FAST),
        visit("missed", client_id="c3", start=s, **FAST),
        visit("missed-p1", client_id="c4", start=s, time_critical=True, lives_alone=True,
              risk_level="high", **FAST),
        visit("wrong-place", client_id="c5", start=s, **FAST),
        visit("poor-fix", client_id="c6", start=s, **FAST),
        visit("cancel", client_id="c7", start=s, **FAST),
        visit("short", client_id="c8", start=s, minutes=20, short_long_after_s=300, **FAST),
        visit("double", client_id="c9", workers=("w1", "w2"), start=s, **FAST),
        visit("bad-end", client_id="c10", start=s, scheduled_end="2020-01-01T00:00:00Z"),
    ], far


def test_escalations_and_dead_letters_are_exactly_those_expected(settings, spawn_worker):
    worker = spawn_worker("w-a")
    worker.wait_ready()
    reader = Reader(settings, settings.topic_escalations, settings.topic_deadletter)
    now = time.time()
    roster, far = _roster(now)
    s = now + 1
    produce(settings, settings.topic_roster, [roster[:5], roster[5:]])
    poor = north_of_home(220)
    produce(settings, settings.topic_events, [
        [event(at=s, visit_id="on-time", client_id="c1", event_id="e-on"),
         event(at=s, visit_id="wrong-place", client_id="c5", lat=far[0], lon=far[1]),
         event(at=s, visit_id="poor-fix", client_id="c6", lat=poor[0], lon=poor[1],
               accuracy_m=150),
         event(at=s, visit_id="short", client_id="c8", method="nfc"),
         event(at=s, visit_id="double", client_id="c9", worker_id="w1"),
         event(at=s, visit_id=None, client_id="c-none", worker_id="w7", method="telephony",
               caller_number="01603 999999"),
         event(at=s, visit_id="ghost", client_id="c1", event_id="e-ghost")],
        b'{"event_id": "x", "type": ',  # cut off mid-message
        [{"event_id": "no-client", "type": "check_in"}],
        event(at=s, visit_id="on-time", client_id="c1", event_id="e-on"),  # duplicate
        event(at=s, visit_id="on-time", client_id="c1", lat=91.0),  # impossible coordinates
    ])
    time.sleep(max(0.0, s + 2 - time.time()))
    produce(settings, settings.topic_events, [
        event("check_out", at=s + 2, visit_id="short", client_id="c8", method="nfc")])
    time.sleep(max(0.0, s + 6 - time.time()))
    produce(settings, settings.topic_events, [event(at=s + 6, visit_id="late", client_id="c2")])
    produce(settings, settings.topic_roster, [visit("cancel", client_id="c7", start=s,
                                                    status="cancelled", **FAST)])

    expected = Counter({
        ("late:late", "open"): 1, ("late:late", "resolved"): 1,
        ("missed:late", "open"): 1, ("missed:missed", "open"): 1,
        ("missed-p1:late", "open"): 1, ("missed-p1:missed", "open"): 1,
        ("wrong-place:location_mismatch", "open"): 1,
        ("poor-fix:location_unverified", "open"): 1,
        ("cancel:late", "open"): 1, ("cancel:late", "resolved"): 1,
        ("short:shortened", "open"): 1,
        ("double:late", "open"): 1, ("double:missed", "open"): 1,
    })
    today = time.strftime("%Y%m%d", time.gmtime(s))
    expected[(f"adhoc:c-none:w7:{today}:unscheduled", "open")] = 1
    expected_dead = Counter({"invalid_json": 1, "missing_field": 1, "duplicate_event": 1,
                             "invalid_coordinates": 1, "end_before_start": 1,
                             "unknown_visit": 1})

    def complete(r: Reader) -> bool:
        return (len(r.records[settings.topic_escalations]) >= sum(expected.values())
                and len(r.records[settings.topic_deadletter]) >= sum(expected_dead.values()))

    try:
        reader.until(complete, timeout_s=60, quiet_s=4)
    finally:
        reader.close()
    escalations = reader.records[settings.topic_escalations]
    got = Counter((e["escalation_id"], lifecycle(e)) for e in escalations if lifecycle(e))
    assert got == expected, worker.log()[-3000:]
    dead = Counter(d["reason"] for d in reader.records[settings.topic_deadletter])
    assert dead == expected_dead

    by = {(e["escalation_id"], lifecycle(e)): e for e in escalations if lifecycle(e)}
    p1 = by[("missed-p1:missed", "open")]
    assert (p1["priority"], p1["recommended_route"]) == ("P1", "emergency_escalation")
    assert by[("late:late", "resolved")]["evidence"]["lateness_s"] == pytest.approx(6.0)
    assert by[("cancel:late", "resolved")]["resolution"] == "cancelled"
    assert by[("double:late", "open")]["evidence"]["workers_absent"] == ["w2"]
    # Deadlines that fell due while the worker ran were raised within 2 s of them.
    for key in (("missed:missed", "open"), ("missed-p1:missed", "open")):
        e = by[key]
        lag = parse_instant(e["detected_at"]) - parse_instant(e["deadline"])
        assert 0 <= lag <= 2.0, (key, lag)
    dl = next(d for d in reader.records[settings.topic_deadletter] if d["reason"] == "invalid_json")
    assert dl["source"]["topic"] == settings.topic_events and dl["raw"]
