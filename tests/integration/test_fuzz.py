"""A hostile stream through a real worker: every record accounted for, and the worker never
stops (tests/fuzz.py generates it from a fixed seed)."""

from __future__ import annotations

import json
import random
import time
import urllib.request
from collections import Counter

import orjson
import pytest
from kafka import KafkaProducer

from stream.topics import partition_for
from tests import fuzz
from tests.cluster import Reader

pytestmark = pytest.mark.integration

RECORDS = 20_000


def _progress(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/progress", timeout=10) as r:
        return json.loads(r.read())


def test_a_hostile_stream_never_stops_the_worker_and_every_record_is_accounted_for(
        settings, spawn_worker):
    worker = spawn_worker("fuzz")
    worker.wait_ready()
    topics = {"roster": settings.topic_roster, "events": settings.topic_events}
    rng = random.Random(7)
    sent: Counter[str] = Counter()
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers,
                             max_request_size=2 << 20, linger_ms=20)
    for topic, value, records in fuzz.messages(seed=29, records=RECORDS, now=time.time()):
        try:  # keyed, as a well-behaved gateway sends, or anywhere
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
    assert sum(sent.values()) >= RECORDS
    reader = Reader(settings, settings.topic_deadletter)
    port = worker.settings.web_port

    def accounted(r: Reader) -> bool:
        dead = Counter(d["source"]["topic"] for d in r.records[settings.topic_deadletter])
        accepted = _progress(port)["accepted"]
        got = {settings.topic_roster: accepted["roster"] + dead[settings.topic_roster],
               settings.topic_events: accepted["event"] + dead[settings.topic_events]}
        return got == dict(sent)

    # Events that name a visit never rostered wait out their grace before they are
    # dead-lettered; then nothing more may come.
    reader.until(accounted, timeout_s=240, quiet_s=2 * settings.unscheduled_grace_s)
    assert accounted(reader)
    assert worker.process is not None and worker.process.poll() is None
    reasons = Counter(d["reason"] for d in reader.records[settings.topic_deadletter])
    # Every mutation class reached the worker and was named.
    for reason in ("invalid_json", "invalid_utf8", "not_an_object", "missing_field",
                   "wrong_type", "invalid_value", "invalid_time", "invalid_coordinates",
                   "value_too_large", "too_deeply_nested", "unknown_visit", "duplicate_event"):
        assert reasons[reason] > 0, (reason, reasons)
    reader.close()
