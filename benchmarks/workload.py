"""Rosters and check-ins for the pipeline benchmark, built fast and with known answers.

Every visit has one client and one worker; visit ``i`` is at a fixed point spread over Great
Britain with the default circular fence. A check-in is made at the home, except for every
``WRONG_PLACE_EVERY``-th visit, whose check-in is 2 km away: those, and only those, must raise
``location_mismatch``. Visits that are checked in are scheduled hours ahead, so no timer falls
due during a run; the latency workload books visits whose late deadlines fall inside the run
and are never checked in, so each raises exactly one ``late`` at its deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from stream.timeutil import format_instant
from stream.topics import by_partition

WRONG_PLACE_EVERY = 50
_AWAY_DEG = 2000.0 / 111_195.0  # 2 km north


def home(i: int) -> tuple[float, float]:
    return 50.5 + (i * 7919 % 100_000) / 25_000.0, -4.5 + (i * 104_729 % 100_000) / 20_000.0


def visit(i: int, start: float, *, prefix: str = "bv", minutes: float = 60.0,
          late_after_s: float | None = None,
          missed_after_s: float | None = None) -> dict[str, Any]:
    lat, lon = home(i)
    doc: dict[str, Any] = {
        "visit_id": f"{prefix}{i}",
        "client_id": f"{prefix}c{i}",
        "worker_ids": [f"bw{i % 40_000}"],
        "scheduled_start": format_instant(start),
        "scheduled_end": format_instant(start + minutes * 60.0),
        "location": {"lat": lat, "lon": lon},
    }
    if late_after_s is not None:
        doc["late_after_s"] = late_after_s
    if missed_after_s is not None:
        doc["missed_after_s"] = missed_after_s
    return doc


def wrong_place(i: int) -> bool:
    return i % WRONG_PLACE_EVERY == 0


def check_in(i: int, at: str, *, prefix: str = "bv", tag: str = "",
             away: bool = False) -> dict[str, Any]:
    """Visit ``i``'s check-in, at the home or 2 km away (every ``WRONG_PLACE_EVERY``-th
    visit, or every one when ``away``: a storm in which each raises location_mismatch)."""
    lat, lon = home(i)
    if away or wrong_place(i):
        lat += _AWAY_DEG
    return {"event_id": f"{prefix}e{tag}{i}", "type": "check_in", "client_id": f"{prefix}c{i}",
            "worker_id": f"bw{i % 40_000}", "visit_id": f"{prefix}{i}", "occurred_at": at,
            "method": "gps", "lat": lat, "lon": lon, "accuracy_m": 10.0}


def messages(docs: Iterator[dict[str, Any]] | list[dict[str, Any]], per: int) -> list[bytes]:
    """JSON arrays of ``per`` records (a bare object when ``per`` is 1)."""
    docs = list(docs)
    if per == 1:
        return [orjson.dumps(d) for d in docs]
    return [orjson.dumps(docs[k:k + per]) for k in range(0, len(docs), per)]


def keyed_messages(docs: Iterator[dict[str, Any]] | list[dict[str, Any]], per: int,
                   partitions: int) -> list[tuple[int | None, bytes]]:
    """``(partition, value)`` messages as a producer keying by client sends them: the
    records grouped by their client's partition, ``per`` to a message."""
    return [(p, value) for p, group in by_partition(docs, partitions).items()
            for value in messages(group, per)]


def roster(n: int, start: float, *, prefix: str = "bv") -> Iterator[dict[str, Any]]:
    # Spread over an hour so the timer heaps hold distinct deadlines, as a real day does.
    return (visit(i, start + (i % 3600), prefix=prefix) for i in range(n))


def check_ins(lo: int, hi: int, at: float, *, prefix: str = "bv", tag: str = "",
              away: bool = False) -> Iterator[dict[str, Any]]:
    stamp = format_instant(at)
    return (check_in(i, stamp, prefix=prefix, tag=tag, away=away) for i in range(lo, hi))
