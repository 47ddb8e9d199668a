"""Worker runs: where a worker is, when they will reach each visit they have not reached,
and why a predicted lateness happens (stream/rules/runs.py), on a manual clock."""

from __future__ import annotations

import pytest

from stream.rules.runs import MOVE_S, SEND_AHEAD_S, Runs, Stop, Travel
from tests.factories import T0

LAT, LON = 51.5, -0.1
KM = 1 / 111.2  # degrees of latitude in a kilometre
SPEED = 5.0  # m/s, the default the tests give
LATE = 900.0


def stop(vid: str, start: float, km_north: float = 0.0, minutes: float = 30.0,
         partition: int = 0) -> Stop:
    return Stop(vid, partition, start, start + minutes * 60, LAT + km_north * KM, LON,
                start + LATE)


def runs_of(*stops: Stop, worker: str = "w1") -> Runs:
    runs = Runs(Travel(SPEED))
    for s in stops:
        runs.visit(s, (worker,))
    return runs


def by_visit(runs: Runs, now: float, worker: str = "w1") -> dict:
    return {p.visit_id: p for p in runs.predict(worker, now)}


def test_no_basis_before_the_run_starts():
    runs = runs_of(stop("a", T0), stop("b", T0 + 3600, 2))
    assert runs.predict("w1", T0 - 1) == []


def test_a_run_not_started_predicts_from_now_with_that_cause():
    runs = runs_of(stop("a", T0), stop("b", T0 + 1800, 3))
    p = by_visit(runs, T0 + 1200)  # 20 minutes past the first start, no check-in
    assert p["a"].expected_arrival == T0 + 1200 and p["a"].cause == "not_started"
    assert p["a"].basis[0] == "not_started"
    # b: a's half hour from now, then 3 km at 5 m/s (600 s): 50 min past b's start.
    assert p["b"].expected_arrival == pytest.approx(T0 + 1200 + 1800 + 600)
    assert p["b"].late and p["b"].cause == "not_started"


def test_an_overrun_is_carried_down_the_run():
    runs = runs_of(stop("a", T0), stop("b", T0 + 2400, 1), stop("c", T0 + 4800, 1))
    runs.event("w1", "a", "check_in", T0 + 1500)  # 25 minutes late at a
    p = by_visit(runs, T0 + 1500)
    # Out of a at T0 + 3300, 1 km (200 s), at b at 3500 s: past its late deadline (3300).
    assert p["b"].expected_arrival == pytest.approx(T0 + 3500)
    assert p["b"].cause == "carried_from_previous_visit"
    assert p["b"].basis[:2] == ("inside", "a")
    # c, on b's street, at 3500 + 1800 = 5300 s: in time (its deadline is 5700 s).
    assert not p["c"].late and p["c"].cause is None


def test_a_drive_too_long_for_the_gap_is_travel():
    runs = runs_of(stop("a", T0), stop("b", T0 + 2100, 12))
    runs.event("w1", "a", "check_in", T0)
    runs.event("w1", "a", "check_out", T0 + 1800)  # on time
    p = by_visit(runs, T0 + 1800)
    # 12 km at 5 m/s is 2400 s: at b 4200 s, past its deadline (3000 s) even leaving on time.
    assert p["b"].expected_arrival == pytest.approx(T0 + 4200, abs=5)
    assert p["b"].cause == "travel" and p["b"].basis[0] == "checked_out"


def test_inside_past_the_planned_end_the_departure_moves_with_the_clock():
    runs = runs_of(stop("a", T0), stop("b", T0 + 1800))
    runs.event("w1", "a", "check_in", T0)
    assert by_visit(runs, T0 + 60)["b"].expected_arrival == T0 + 1800
    later = by_visit(runs, T0 + 2400)["b"]  # still inside, 10 minutes past a's end
    assert later.expected_arrival == T0 + 2400 and not later.late
    assert by_visit(runs, T0 + 2800)["b"].late  # past b's late deadline (2700 s)


def test_a_region_learns_its_travel_from_transfers_that_could_not_be_waiting():
    travel = Travel(SPEED, 60.0)
    a, b = stop("a", T0), stop("b", T0 + 1800, 2)
    travel.observe(a, b, T0 + 1800, T0 + 1700)  # arrived before it left
    travel.observe(a, b, T0 + 1700, T0 + 1790)  # before b's start: may have waited
    travel.observe(a, b, T0 + 1700, T0 + 2000)  # within 5 minutes of it: may have, too
    assert travel.of(b.lat, b.lon) == (60.0, SPEED)
    # 180 s to leave and park, then 10 m/s: from 1 to 6 km, and two that met a delay.
    metres = [1000 + 250 * k for k in range(21)]
    for k, m in enumerate(metres):
        far = stop(f"x{k}", T0 + 1800, m / 1000)
        seconds = 180 + m / 10 + (2400 if k in (3, 11) else 0)
        travel.observe(a, far, T0 + 2400 - seconds, T0 + 2400)
    overhead, speed = travel.of(b.lat, b.lon)
    assert overhead == pytest.approx(180, abs=1) and speed == pytest.approx(10, rel=0.01)
    seconds, _ = travel.seconds(LAT, LON, LAT + 4 * KM, LON)
    assert seconds == pytest.approx(580, abs=2)
    # Another region has none of its own yet: it takes all of the partition's together.
    assert travel.of(LAT + 1, LON + 1) == (overhead, speed)
    assert Travel(SPEED, 60.0).of(LAT + 1, LON + 1) == (60.0, SPEED)


def test_check_ins_teach_the_run_partitions_travel():
    # Hourly visits, alternately 1 and 7 km north, a little further each time; out of each
    # at 58:20, in at the next after its start: 120 s plus 100 s a km.
    far = [1 + 6 * (k % 2) + 0.3 * k for k in range(24)]
    runs = runs_of(*[stop(f"v{k}", T0 + k * 3600, far[k]) for k in range(24)])
    runs.event("w1", "v0", "check_in", T0)
    for k in range(23):
        runs.event("w1", f"v{k}", "check_out", T0 + k * 3600 + 3500)
        if k < 20:
            assert runs.travel.of(LAT, LON) == (0.0, SPEED)  # too few transfers yet
        km = abs(far[k + 1] - far[k])
        runs.event("w1", f"v{k + 1}", "check_in", T0 + k * 3600 + 3500 + 120 + 100 * km)
    overhead, speed = runs.travel.of(LAT, LON)
    assert overhead == pytest.approx(120, abs=2) and speed == pytest.approx(10, rel=0.02)


def test_a_reassigned_visit_leaves_its_run_and_its_prediction_is_withdrawn():
    runs = runs_of(stop("a", T0), stop("b", T0 + 1800, 1))
    runs.event("w1", "a", "check_in", T0)
    assert {p.visit_id for p in runs.changed("w1", T0 + 60)} == {"b"}
    moved = stop("b", T0 + 1800, 1)
    assert runs.visit(moved, ("w2",), was=("w1",)) == ["w1", "w2"]
    (gone,) = runs.changed("w1", T0 + 120)
    assert gone.visit_id == "b" and gone.expected_arrival is None
    assert runs.changed("w1", T0 + 180) == []
    assert runs.predict("w2", T0 + 120) == []  # w2 has not started, b not due yet


def test_a_cancelled_visit_leaves_every_run():
    runs = runs_of(stop("a", T0), stop("b", T0 + 1800, 1))
    assert runs.visit(stop("b", T0 + 1800, 1), ("w1",), was=("w1",), cancelled=True) == ["w1"]
    assert set(runs.runs["w1"].stops) == {"a"}


def test_a_prediction_is_sent_again_only_when_it_moves():
    runs = runs_of(stop("a", T0), stop("b", T0 + 1800))
    runs.event("w1", "a", "check_in", T0 + 600)
    assert [p.visit_id for p in runs.changed("w1", T0 + 600)] == ["b"]
    assert runs.changed("w1", T0 + 600 + MOVE_S) == []  # nothing moved: still 2400 s
    runs.event("w1", "a", "check_out", T0 + 2400 + MOVE_S)  # left later than planned
    (p,) = runs.changed("w1", T0 + 2400 + MOVE_S)
    assert p.expected_arrival == T0 + 2400 + MOVE_S


def test_a_roster_update_keeps_what_the_worker_did_there():
    runs = runs_of(stop("a", T0))
    runs.event("w1", "a", "check_in", T0 + 5)
    runs.visit(stop("a", T0, minutes=45), ("w1",), was=("w1",))
    assert runs.runs["w1"].stops["a"].check_in == T0 + 5


def test_events_of_visits_outside_the_run_are_not_taken():
    runs = runs_of(stop("a", T0))
    assert not runs.event("w9", "a", "check_in", T0)
    assert not runs.event("w1", "zz", "check_in", T0)


def test_forgetting_drops_ended_stops_and_empty_runs():
    runs = runs_of(stop("a", T0), stop("b", T0 + 7200))
    runs.forget(T0 + 3600)
    assert set(runs.runs["w1"].stops) == {"b"}
    runs.forget(T0 + 99_999)
    assert runs.runs == {}


def test_late_by_the_clock_alone_has_no_cause_from_the_run():
    # Out of a on time, 1 km (200 s) to b: due in time. Past b's late deadline with no
    # check-in, the worker is overdue: the road, a phone or another place; the run can't say.
    runs = runs_of(stop("a", T0), stop("b", T0 + 2400, 1))
    runs.event("w1", "a", "check_in", T0)
    runs.event("w1", "a", "check_out", T0 + 1800)
    b = by_visit(runs, T0 + 2400 + LATE + 60)["b"]
    assert b.late and b.expected_arrival == T0 + 2400 + LATE + 60 and b.cause is None


def test_sent_for_the_next_visit_and_those_whose_late_deadline_is_near():
    runs = runs_of(stop("a", T0), stop("b", T0 + 5.9 * 3600, 1, minutes=5),
                   stop("c", T0 + 6 * 3600, 2))
    runs.event("w1", "a", "check_in", T0)
    runs.event("w1", "a", "check_out", T0 + 1800)
    sent = runs.changed("w1", T0 + 1800)
    assert [p.visit_id for p in sent] == ["b"]  # the next visit, hours ahead
    near = T0 + 6 * 3600 + LATE - SEND_AHEAD_S
    assert runs.changed("w1", near - 60) == []
    assert [p.visit_id for p in runs.changed("w1", near)] == ["c"]


def test_a_double_ups_workers_come_and_go_apart():
    runs = Runs(Travel(SPEED))
    for s in (stop("a", T0), stop("b", T0 + 3600, 1)):
        runs.visit(s, ("w1", "w2") if s.visit_id == "a" else ("w2",))
    runs.event("w1", "a", "check_in", T0)
    runs.event("w2", "a", "check_in", T0)
    runs.event("w1", "a", "check_out", T0 + 600)  # w1 leaves early; w2 stays on
    b = by_visit(runs, T0 + 1500, worker="w2")["b"]
    assert b.basis[0] == "inside" and b.basis[2] == T0 + 1800
    runs.visit(stop("a", T0), ("w1", "w2"))  # the record again keeps each one's marks
    assert runs.runs["w1"].stops["a"].check_out == T0 + 600
    assert runs.runs["w2"].stops["a"].check_out is None
