"""Hostile input, generated from a seed: every kind of record a broken or malicious gateway
could send, and what the contract says each message holds.

:func:`messages` yields ``(topic, value, records)``: ``records`` is how many records the
message counts for, by the contract's definition alone (an array of at most ``max_items``
JSON values is that many records; any other message is one): a worker must account for
each as accepted or dead-lettered. Every event names a visit (rostered or not), so none can
end as an unscheduled visit instead.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import orjson

from stream.timeutil import format_instant
from tests.factories import HOME

# The mutation classes, each a function of (rng, a valid record) to a record or to bytes.


def _valid_visit(rng: random.Random, n: int, now: float) -> dict[str, Any]:
    start = now + rng.randint(-3600, 3600)
    return {"visit_id": f"fv{n}", "client_id": f"fc{rng.randint(0, 300)}",
            "worker_ids": [f"fw{rng.randint(0, 50)}"],
            "scheduled_start": format_instant(start),
            "scheduled_end": format_instant(start + rng.choice((900, 1800, 3600))),
            "location": {"lat": HOME[0] + rng.uniform(-0.05, 0.05),
                         "lon": HOME[1] + rng.uniform(-0.05, 0.05)},
            "risk_level": rng.choice(("low", "medium", "high", "critical"))}


def _valid_event(rng: random.Random, visit: dict[str, Any], n: int, now: float
                 ) -> dict[str, Any]:
    method = rng.choice(("gps", "gps", "gps", "telephony", "nfc", "manual"))
    doc: dict[str, Any] = {
        "event_id": f"fe{n}", "type": rng.choice(("check_in", "check_out")),
        "client_id": visit["client_id"], "worker_id": visit["worker_ids"][0],
        "visit_id": visit["visit_id"], "method": method,
        "occurred_at": format_instant(now + rng.randint(-1800, 60))}
    if method == "gps":
        doc.update(lat=HOME[0] + rng.uniform(-0.05, 0.05),
                   lon=HOME[1] + rng.uniform(-0.05, 0.05), accuracy_m=rng.uniform(1, 200))
    elif method == "telephony":
        doc["caller_number"] = "01603 000111"
    elif method == "nfc":
        doc["tag_id"] = "tag-1"
    return doc


def _mutate(rng: random.Random, doc: dict[str, Any]) -> Any:
    """One mutation of a valid record: a record again, or raw bytes."""
    doc = dict(doc)
    key = rng.choice(sorted(doc))
    kind = rng.randrange(16)
    if kind == 0:
        del doc[key]  # a missing field
    elif kind == 1:
        doc[key] = rng.choice((None, 7, 1.5, True, [], {}, "x", -1))  # a wrong type or value
    elif kind == 2:
        doc[key] = "" if rng.random() < 0.5 else "z" * rng.choice((201, 5000))  # a bad length
    elif kind == 3:
        doc["extra"] = 1e400  # beyond double range, in a field the contract does not know
    elif kind == 4:
        depth = rng.choice((33, 60, 200, 2000))
        if depth > 200:  # deeper than the encoder goes: written out as bytes
            doc["extra"] = "__nest__"
            return orjson.dumps(doc).replace(b'"__nest__"', b"[" * depth + b"]" * depth)
        doc["extra"] = _nested(depth)
    elif kind == 5:
        doc["extra"] = "x" * rng.choice((70_000, 200_000))
    elif kind == 6:
        doc["extra"] = [1] * rng.choice((10_001, 60_000))
    elif kind == 7:
        for name in ("scheduled_start", "scheduled_end", "occurred_at"):
            if name in doc:
                doc[name] = rng.choice(("0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59Z",
                                        "2026-13-45T99:00:00Z", "2026-11-18T10:00:00",
                                        "yesterday", "1999-01-01T00:00:00Z"))
    elif kind == 8:
        return rng.choice(({}, None, 0, "record", [doc], True))  # not a record
    elif kind == 9:
        for name in ("lat", "lon"):
            if name in doc:
                doc[name] = rng.choice((91.0, -181.0, 0.0, "52"))
        if "location" in doc:
            doc["location"] = rng.choice(({"lat": 0.0, "lon": 0.0}, {"lat": 95, "lon": 1},
                                          [52, 1], "here"))
    elif kind == 10:
        doc["worker_ids"] = rng.choice(([], ["a", "a"], ["a", "b", "c"], [1], "w1"))
    elif kind == 11:
        doc["visit_id" if "visit_id" in doc else "client_id"] = "\u00e9\u4e2d\U0001f600"
    elif kind == 12:
        doc["geofence"] = rng.choice(({"type": "Polygon", "coordinates": [[[1, 52]] * 3]},
                                      {"type": "Point"}, "circle",
                                      {"type": "Polygon", "coordinates": [[[1.29, 52.63]] *
                                                                          20_000]}))
    elif kind == 13:
        doc["client_phones"] = ["1"] * rng.choice((51, 3))
        doc["gateway_id"] = "g" * rng.choice((10, 300))
    elif kind == 14:
        return orjson.dumps(doc)[: rng.randint(1, 40)]  # truncated JSON
    else:
        raw = orjson.dumps(doc)
        i = rng.randrange(len(raw))
        return raw[:i] + bytes([rng.randrange(256)]) + raw[i + 1:]  # one byte changed
    if "event_id" in doc and doc.get("visit_id") is None:
        doc["visit_id"] = 7  # still no event without a visit: a wrong type instead
    return doc


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _random_bytes(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
    if kind == 1:
        return b"\xff\xfe" + b"x" * rng.randint(0, 50)  # invalid UTF-8
    if kind == 2:
        return b'{"event_id": "\\ud800"}'  # a lone surrogate
    if kind == 3:
        return b"[" * 10_000 + b"]" * 10_000
    if kind == 4:
        return b'{"a": ' + b"9" * 400 + b"}"  # a number no double holds
    return b"{" * rng.randint(1, 100)


def messages(seed: int, records: int, now: float) -> Iterator[tuple[str, bytes, int]]:
    """About ``records`` records' worth of hostile and valid input, in messages."""
    rng = random.Random(seed)
    visits: list[dict[str, Any]] = []
    made = n = 0
    while made < records:
        n += 1
        roster = rng.random() < 0.35 or not visits
        size = rng.choice((1, 1, 1, 5, 20))
        items: list[Any] = []
        for k in range(size):
            if roster:
                v = _valid_visit(rng, n * 100 + k, now)
                if rng.random() < 0.7:
                    visits.append(v)
                    items.append(v)
                else:
                    items.append(_mutate(rng, v))
            else:
                if rng.random() < 0.8:
                    target = rng.choice(visits)
                else:  # a visit never rostered: waits, then unknown_visit
                    target = _valid_visit(rng, -n * 100 - k, now)
                e = _valid_event(rng, target, n * 100 + k, now)
                if rng.random() < 0.05:
                    e["event_id"] = f"fe{rng.randint(1, n * 100)}"  # a duplicate id, maybe
                items.append(e if rng.random() < 0.6 else _mutate(rng, e))
        topic = "roster" if roster else "events"
        if rng.random() < 0.03:
            value = _random_bytes(rng)
        elif any(type(i) is bytes for i in items):
            # Raw bytes stand alone: each is its own message.
            for i in items:
                value = i if type(i) is bytes else orjson.dumps(i)
                made += count(value)
                yield topic, value, count(value)
            continue
        else:
            value = orjson.dumps(items if size > 1 or rng.random() < 0.3 else items[0])
        made += count(value)
        yield topic, value, count(value)


def count(value: bytes, max_items: int = 10_000, max_bytes: int = 768 * 1024) -> int:
    """How many records a message is, by the contract: an array of at most ``max_items``
    values in a message the worker decodes is that many; anything else is one."""
    if len(value) > max_bytes:
        return 1
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return 1
    if type(doc) is list and len(doc) <= max_items:
        return len(doc)
    return 1
