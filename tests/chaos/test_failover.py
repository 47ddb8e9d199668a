"""The rotation benchmark's fail-over measure (benchmarks/failover.py), on records made up
to show each of its definitions: in process, no broker."""

from __future__ import annotations

from benchmarks.failover import Published, measure
from simulator.ledger import Expected, Ledger
from stream.clock import ScaledClock
from stream.timeutil import format_instant

SIM0, WALL0, SPEED = 1_795_000_000.0, 1_000.0, 10.0
CLOCK = ScaledClock(SIM0, WALL0, SPEED)


def _open(eid: str, kind: str, deadline_wall: float, published_wall: float | None,
          status: str = "open") -> Published:
    deadline = SIM0 + (deadline_wall - WALL0) * SPEED
    detected = SIM0 + ((published_wall or deadline_wall) - WALL0) * SPEED
    return Published({"escalation_id": eid, "kind": kind, "status": status,
                      "deadline": format_instant(deadline),
                      "detected_at": format_instant(detected)}, published_wall)


def _ledger(*records: Published) -> Ledger:
    """Every record's escalation expected (the measure reads deadlines off the records)."""
    expected = [Expected(p.doc["escalation_id"], p.doc["kind"], SIM0, True) for p in records]
    return Ledger(SIM0, SIM0 + 10_000, SIM0 + 10_000, SPEED, expected, {})


def test_a_kill_s_delay_runs_to_its_last_overdue_escalation():
    kills = [1_010.0, 1_050.0]
    records = [
        _open("a:late", "late", 1_005.0, 1_005.2),  # before any kill, on time
        _open("b:late", "late", 1_011.0, 1_024.0),  # stalled by kill 0: 13 s late
        _open("c:missed", "missed", 1_015.0, 1_025.0),  # the last one it caused: kill + 15
        _open("d:late", "late", 1_040.0, 1_040.1),  # kill 0's span, outside its window
        _open("e:shortened", "shortened", 1_051.0, 1_090.0),  # an event kind: not timed
        _open("f:late", "late", 1_052.0, 1_053.0),  # kill 1: late, but within 2 s
        _open("f:late", "late", 1_052.0, 1_080.0),  # a second open: only the first counts
    ]
    m = measure(records, _ledger(*records), CLOCK, kills, session_timeout_s=10.0)
    assert [k["failover_s"] for k in m["kills"]] == [15.0, 0.0]
    assert [k["overdue"] for k in m["kills"]] == [2, 0]
    assert m["kills"][0]["ratio"] == 0.75 and m["bound_s"] == 20.0
    assert m["failover"]["max"] == 15.0 and m["failover"]["over_bound"] == 0
    assert m["lateness_in_kill_windows"]["n"] == 3  # b, c, f
    assert m["lateness_outside"]["n"] == 2  # a, d
    assert m["lateness_in_kill_windows"]["max"] == 13.0


def test_without_a_kafka_timestamp_the_detection_instant_stands_in():
    records = [_open("a:late", "late", 1_011.0, None)]
    records[0].doc["detected_at"] = format_instant(SIM0 + (1_030.0 - WALL0) * SPEED)
    m = measure(records, _ledger(*records), CLOCK, [1_010.0], session_timeout_s=10.0)
    assert m["kills"][0]["failover_s"] == 20.0 and m["failover"]["ratio_max"] == 1.0
    assert m["timestamps"] != "kafka"
