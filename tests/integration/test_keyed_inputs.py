"""Inputs produced to their client's partition skip ecm.work; the rest still go through it.

Real broker, real worker process: escalations must be the same either way, and the work
topic must carry exactly the records that arrived on another partition.
"""

from __future__ import annotations

import time
import urllib.request
from collections import Counter

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from stream.contract.records import lifecycle
from stream.topics import partition_for
from tests.cluster import Reader, metric
from tests.factories import event, north_of_home, visit

pytestmark = pytest.mark.integration

FAST = {"late_after_s": 4, "missed_after_s": 3600, "no_checkout_after_s": 3600}


def _work_records(settings) -> list[dict]:
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                             enable_auto_commit=False, consumer_timeout_ms=500)
    tps = [TopicPartition(settings.topic_work, p) for p in range(settings.partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    items = [item for m in consumer for item in orjson.loads(m.value)["items"]]
    consumer.close()
    return items


def test_keyed_records_skip_the_work_hop_and_decide_the_same(settings, spawn_worker):
    worker = spawn_worker("w-keyed")
    worker.wait_ready()
    reader = Reader(settings, settings.topic_escalations)
    n = settings.partitions
    s = time.time() + 1
    clients = [f"k{i}" for i in range(12)]
    far = north_of_home(2000)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    # One roster array per partition, as a scheduler that keys by client would send it.
    for p in range(n):
        mine = [visit(f"v-{c}", client_id=c, start=s, **FAST) for c in clients
                if partition_for(c, n) == p]
        if mine:
            producer.send(settings.topic_roster, orjson.dumps(mine), partition=p)
    producer.flush()
    # Check-ins: k0 from the wrong place, k1 never checks in (late); the rest on time. All
    # keyed to their client's partition except k2's, which lands on the next partition.
    misplaced = "k2"
    for c in clients:
        if c == "k1":
            continue
        lat, lon = far if c == "k0" else north_of_home(0)
        doc = event(at=s, visit_id=f"v-{c}", client_id=c, event_id=f"e-{c}", lat=lat, lon=lon)
        home = partition_for(c, n)
        producer.send(settings.topic_events, orjson.dumps(doc),
                      partition=(home + 1) % n if c == misplaced else home)
    producer.flush()
    producer.close()

    expected = Counter({("v-k0:location_mismatch", "open"): 1, ("v-k1:late", "open"): 1})
    try:
        reader.until(lambda r: len(r.records[settings.topic_escalations]) >= 2, timeout_s=60,
                     quiet_s=3)
    finally:
        reader.close()
    got = Counter((e["escalation_id"], lifecycle(e))
                  for e in reader.records[settings.topic_escalations] if lifecycle(e))
    assert got == expected, worker.log()[-3000:]

    # Only the misplaced check-in took the hop: it is the one record on ecm.work.
    forwarded = _work_records(settings)
    assert [obj["event_id"] for _, _, _, obj in forwarded] == [f"e-{misplaced}"]
    port = worker.settings.web_port
    records = len(clients) + len(clients) - 1  # visits, and every check-in but k1's
    assert metric(port, 'ecm_work_records_total{path="direct"}') == records - 1
    assert metric(port, 'ecm_work_records_total{path="forwarded"}') == 1
    # /progress reads the same counts as /metrics, for callers that poll often.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/progress", timeout=10) as r:
        progress = orjson.loads(r.read())
    assert progress == {
        "received": {"roster": len(clients), "event": len(clients) - 1, "action": 0},
        "accepted": {"roster": len(clients), "event": len(clients) - 1, "action": 0},
        "visits_tracked": metric(port, "ecm_visits_tracked")}
    accepted = metric(port, 'ecm_records_accepted_total{kind="event"}')
    assert progress["accepted"]["event"] == accepted
