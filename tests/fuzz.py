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
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from kafka import KafkaProducer

from stream.contract.records import (
    ACTION_TYPES,
    OUTCOME_CODES,
    RECOVERY_CODES,
    VALIDATION_STATUSES,
)
from stream.security import connection
from stream.settings import Settings
from stream.timeutil import format_instant
from stream.topics import partition_for
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


def _valid_action(rng: random.Random, visit: dict[str, Any], n: int, now: float
                  ) -> dict[str, Any]:
    """A duty desk's decision on one of a visit's escalations: raised or not yet, and
    allowed at its case's stage or not (both are accounted for)."""
    kind = rng.choice(ACTION_TYPES)
    doc: dict[str, Any] = {
        "action_id": f"fa{n}", "type": kind, "client_id": visit["client_id"],
        "escalation_id": f"{visit['visit_id']}:{rng.choice(('late', 'missed'))}",
        "at": format_instant(now + rng.randint(-600, 30)), "by": f"duty{rng.randint(1, 3)}"}
    if kind == "acknowledge":
        doc["owner_id"] = doc["by"]
    elif kind == "assign_recovery":
        doc.update(recovery_action_code=rng.choice(RECOVERY_CODES),
                   assigned_worker_id=f"fw{rng.randint(0, 50)}",
                   recovery_deadline=format_instant(now + 1800))
    elif kind == "record_decision":
        doc.update(action_type="welfare_call", reviewer_id="lead1")
    elif kind == "complete_recovery":
        doc.update(service_outcome="delivered", member_condition="well")
    else:
        doc.update(validation_status=rng.choice(VALIDATION_STATUSES),
                   final_outcome_code=rng.choice(OUTCOME_CODES))
    return doc


# Mutations that make a message large (deep nesting, huge strings and arrays, a polygon of
# 20,000 points): ``huge`` scales how often they are kept (a million-record run keeps the
# broker's memory in bounds with fewer).
_LARGE = frozenset({4, 5, 6, 12})


def _mutate(rng: random.Random, doc: dict[str, Any], huge: float = 1.0) -> Any:
    """One mutation of a valid record: a record again, or raw bytes."""
    doc = dict(doc)
    key = rng.choice(sorted(doc))
    kind = rng.randrange(16)
    if kind in _LARGE and rng.random() >= huge:
        kind = 1
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


def _random_bytes(rng: random.Random, huge: float = 1.0) -> bytes:
    kind = rng.randrange(6)
    if kind == 3 and rng.random() >= huge:
        kind = 0
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


def messages(seed: int, records: int, now: float, huge: float = 1.0
             ) -> Iterator[tuple[str, bytes, int]]:
    """About ``records`` records' worth of hostile and valid input, in messages, to
    "roster", "events" and "actions"."""
    rng = random.Random(seed)
    visits: list[dict[str, Any]] = []
    made = n = 0
    while made < records:
        n += 1
        draw = rng.random()
        topic = ("roster" if draw < 0.3 or not visits else
                 "events" if draw < 0.8 else "actions")
        size = rng.choice((1, 1, 1, 5, 20))
        items: list[Any] = []
        for k in range(size):
            if topic == "roster":
                v = _valid_visit(rng, n * 100 + k, now)
                if rng.random() < 0.7:
                    visits.append(v)
                    items.append(v)
                else:
                    items.append(_mutate(rng, v, huge))
                continue
            if rng.random() < 0.8:
                target = rng.choice(visits)
            else:  # a visit never rostered: waits, then unknown_visit
                target = _valid_visit(rng, -n * 100 - k, now)
            if topic == "events":
                record = _valid_event(rng, target, n * 100 + k, now)
                if rng.random() < 0.05:
                    record["event_id"] = f"fe{rng.randint(1, n * 100)}"  # a duplicate, maybe
            else:
                record = _valid_action(rng, target, n * 100 + k, now)
                if rng.random() < 0.05:
                    record["action_id"] = f"fa{rng.randint(1, n * 100)}"
            items.append(record if rng.random() < 0.6 else _mutate(rng, record, huge))
        if rng.random() < 0.03:
            value = _random_bytes(rng, huge)
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


def produce(settings: Settings, stream: Iterable[tuple[str, bytes, int]], seed: int = 7
            ) -> Counter[str]:
    """Send :func:`messages` to the settings' topics, each keyed by its first record's
    client (as a well-behaved gateway sends) or to any partition, half and half: the
    records sent, per topic name."""
    topics = {"roster": settings.topic_roster, "events": settings.topic_events,
              "actions": settings.topic_actions}
    rng = random.Random(seed)
    sent: Counter[str] = Counter()
    producer = KafkaProducer(**connection(settings), max_request_size=2 << 20, linger_ms=20,
                             batch_size=1 << 20)
    for topic, value, records in stream:
        try:
            first = orjson.loads(value)
            first = first[0] if type(first) is list else first
            client = first.get("client_id") if type(first) is dict else None
        except (orjson.JSONDecodeError, IndexError):
            client = None
        partition = (partition_for(client, settings.partitions)
                     if type(client) is str and rng.random() < 0.5
                     else rng.randrange(settings.partitions))
        producer.send(topics[topic], value, partition=partition)
        sent[topics[topic]] += records
    producer.flush()
    producer.close()
    return sent


def accounted(settings: Settings, accepted: dict[str, int], dead: Counter[str]
              ) -> dict[str, int]:
    """Records accepted plus dead-lettered, per input topic: ``accepted`` by kind (the
    worker's /progress), ``dead`` by the dead letters' source topic."""
    return {settings.topic_roster: accepted["roster"] + dead[settings.topic_roster],
            settings.topic_events: accepted["event"] + dead[settings.topic_events],
            settings.topic_actions: accepted["action"] + dead[settings.topic_actions]}
