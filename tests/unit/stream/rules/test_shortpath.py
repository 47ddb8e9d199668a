"""The detector's short path for the common event decides every case as its full rules do.

Two partitions are fed the same seeded, varied day (double-ups, cancellations, re-bookings,
wrong workers, fixes inside, outside and too poor to tell, telephony and tags, check-ins
after a deadline, check-outs, duplicates, replays, unknown and unnamed visits, clocks
wrong both ways), one with the short path and one without: every escalation, rejection,
changelog document and the state they end with must be the same.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from stream.contract import Source
from stream.state.changelog import first_rows
from tests.factories import T0, event, north_of_home, visit
from tests.unit.stream.harness import Harness, Log, partition_state

WORKERS = ("w1", "w2", "w3", "w4")


def _day(seed: int) -> list[tuple[str, Any]]:
    """Steps: ("roster", docs), ("events", (clock, docs)), ("mixed", (clock, roster
    record, event)) in one batch, ("replay", index of an earlier batch), ("sweep",
    instant)."""
    rnd = random.Random(seed)
    steps: list[tuple[str, Any]] = []
    visits = []
    arrives: dict[str, float] = {}  # when each visit's events begin
    for i in range(60):
        start = T0 + rnd.choice((0, 600, 1800, 3600))
        workers = tuple(rnd.sample(WORKERS, rnd.choice((1, 1, 1, 2))))
        extra: dict[str, Any] = {}
        if rnd.random() < 0.2:
            extra["late_after_s"] = rnd.choice((60, 300))
        if rnd.random() < 0.15:
            extra["missed_after_s"] = 300  # before the default lateness
        if rnd.random() < 0.1:
            extra["status"] = "cancelled"
        visits.append(visit(f"v{i}", client_id=f"c{i % 30}", workers=workers, start=start,
                            minutes=rnd.choice((15, 30, 60)), **extra))
        arrives[f"v{i}"] = start + rnd.choice((-900, -60, 0, 120, 600, 1500, 2400))
    steps.append(("roster", visits))
    now = T0 - 1800
    batches: list[list[dict[str, Any]]] = []
    for _ in range(80):
        now += rnd.choice((30, 60, 120, 300))
        batch = []
        for _ in range(rnd.randint(1, 12)):
            due = [v for v in visits if arrives[v["visit_id"]] <= now]
            if not due:
                continue
            v = rnd.choice(due)
            r = rnd.random()
            worker = rnd.choice(v["worker_ids"]) if r < 0.85 else rnd.choice(WORKERS)
            method = rnd.choice(("gps",) * 6 + ("telephony", "nfc", "manual"))
            at = now - rnd.choice((0, 0, 0, 5, 40, 900))  # delivered late
            kw: dict[str, Any] = {}
            if method == "gps":
                where = rnd.random()
                if where < 0.15:
                    kw["lat"], kw["lon"] = north_of_home(2000)
                elif where < 0.25:
                    kw["accuracy_m"] = 5000.0
                elif where < 0.3:
                    kw["accuracy_m"] = None
            elif method == "telephony" and rnd.random() < 0.3:
                kw["caller_number"] = "07700 900000"
            elif method == "nfc" and rnd.random() < 0.3:
                kw["tag_id"] = "tag-x"
            clock = rnd.random()
            if clock < 0.03:
                at = now + 7200  # a device clock far ahead
            elif clock < 0.06:
                at = now - 10 * 86400  # far behind
            vid: str | None = v["visit_id"]
            cid = v["client_id"]
            named = rnd.random()
            if named < 0.1:
                vid = None
            elif named < 0.13:
                vid = "v-unknown"
            elif named < 0.15:
                cid = "c-other"
            kind = "check_in" if rnd.random() < 0.6 else "check_out"
            batch.append(event(kind, at=at, visit_id=vid, client_id=cid, worker_id=worker,
                               method=method, **kw))
        if not batch:
            continue
        if batches and rnd.random() < 0.15:
            batch.append(dict(rnd.choice(rnd.choice(batches))))  # a true duplicate
        batches.append(batch)
        steps.append(("events", (now, batch)))
        if rnd.random() < 0.1:
            steps.append(("replay", len(batches) - 1))
        if rnd.random() < 0.2:
            k = rnd.randrange(len(visits))
            rebooked = visits[k] = dict(visits[k])  # later events follow the booking
            if rnd.random() < 0.5:
                rebooked["status"] = "cancelled"
            else:  # another worker; a cancelled visit booked again, with what it got
                rebooked["worker_ids"] = [rnd.choice(WORKERS)]
                rebooked["status"] = "scheduled"
            steps.append(("roster", [rebooked]))
        if rnd.random() < 0.15:
            # A visit booked in the batch that brings its first check-in.
            i = len(visits)
            late = visit(f"v{i}", client_id=f"c{i % 30}", workers=(rnd.choice(WORKERS),),
                         start=now - 300)
            visits.append(late)
            arrives[late["visit_id"]] = now
            steps.append(("mixed", (now, late, event(
                at=now, visit_id=late["visit_id"], client_id=late["client_id"],
                worker_id=late["worker_ids"][0]))))
        if rnd.random() < 0.3:
            steps.append(("sweep", now))
    steps.append(("sweep", now + 3 * 3600))
    return steps


def _run(steps: list[tuple[str, Any]], fast: bool) -> tuple[Harness, Log, list[Any], int]:
    """The partition after the day, its changelog, its rejections' reasons, and how many
    times the full rules reconciled a visit (the short path does not)."""
    h = Harness(T0 - 1800)
    d = h.detector
    d.fast_path = fast
    reconciled = 0
    full_reconcile = d.attendance.reconcile

    def reconcile(*args: Any) -> Any:
        nonlocal reconciled
        reconciled += 1
        return full_reconcile(*args)

    d.attendance.reconcile = reconcile  # type: ignore[method-assign]
    log = Log(h)
    sources: list[list[tuple[str, dict[str, Any], Source]]] = []
    for step, arg in steps:
        if step == "roster":
            h.roster(*arg)
        elif step == "events":
            now, docs = arg
            h.clock.set(max(h.clock.now(), now))
            batch = [("event", e, h.source("ecm.events")) for e in docs]
            sources.append(batch)
            h.feed(*batch)
        elif step == "mixed":
            now, booked, checked_in = arg
            h.clock.set(max(h.clock.now(), now))
            batch = [("event", checked_in, h.source("ecm.events"))]
            sources.append(batch)
            h.feed(*batch, ("roster", booked))  # the roster record is applied first
        elif step == "replay":
            h.feed(*sources[arg])  # the same records from the same positions
        else:
            h.at(max(h.clock.now(), arg))
        log.publish()
    return h, log, [r.reason for r in h.rejections], reconciled


def _as_rows(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The changelog with every document's first check-ins (``fc``, which only the short
    path writes) as the rows they stand for, and its visits in one order."""
    out = []
    for doc in docs:
        rows = [*first_rows(doc), *doc["visits"]]
        out.append({**{k: v for k, v in doc.items() if k != "fc"},
                    "visits": sorted(rows, key=orjson.dumps)})
    return out


@pytest.mark.parametrize("seed", range(12))
def test_short_path_decides_as_the_full_rules(seed: int) -> None:
    steps = _day(seed)
    fast, fast_log, fast_reasons, _ = _run(steps, True)
    full, full_log, full_reasons, _ = _run(steps, False)
    assert fast.escalations == full.escalations
    assert fast_reasons == full_reasons
    assert any("fc" in doc for doc in fast_log.docs)
    assert not any("fc" in doc for doc in full_log.docs)
    assert _as_rows(fast_log.docs) == _as_rows(full_log.docs)
    assert partition_state(fast.detector) == partition_state(full.detector)


def test_the_days_exercise_both_paths_and_the_rules() -> None:
    """The seeded days are varied enough to hold the short path to something: many events
    take it, and every outcome it must leave to the full rules happens."""
    kinds, reasons, short = set(), set(), 0
    for seed in range(12):
        steps = _day(seed)
        h, _, why, fast_reconciled = _run(steps, True)
        short += _run(steps, False)[3] - fast_reconciled
        kinds |= {(e["kind"], e["status"]) for e in h.escalations}
        reasons |= set(why)
    assert {"late", "missed", "wrong_worker", "location_mismatch", "location_unverified",
            "no_check_out"} <= {k for k, _ in kinds}
    assert ("late", "resolved") in kinds
    assert {"duplicate_event", "clock_in_future", "clock_too_old",
            "client_mismatch"} <= reasons
    assert short > 50


def test_a_visit_booked_again_after_a_cancellation_keeps_the_events_it_had():
    """The short path writes a visit's row itself: with every event the visit holds, here
    one applied while it was cancelled, not only the check-in that took the short path."""
    booked = visit("v1", start=T0)
    steps: list[tuple[str, Any]] = [
        ("roster", [dict(booked, status="cancelled")]),
        ("events", (T0 - 600, [event(at=T0 - 600, event_id="e-cancelled")])),
        ("roster", [booked]),
        ("events", (T0 + 60, [event(at=T0 + 60, event_id="e-in")])),
    ]
    fast, fast_log, _, fast_reconciled = _run(steps, True)
    full, full_log, _, full_reconciled = _run(steps, False)
    assert full_reconciled - fast_reconciled == 1  # the check-in took the short path
    assert fast_log.docs == full_log.docs  # a row: the visit's first event was earlier
    assert fast_log.docs[-1]["visits"] == [
        ["v1", ["w1", [T0 + 60, T0 + 60, "e-in", "gps"]], {}, ["e-cancelled", "e-in"],
         [["ecm.events", 0, 1, 0], ["ecm.events", 0, 3, 0]]]]
    assert partition_state(fast.detector) == partition_state(full.detector)
