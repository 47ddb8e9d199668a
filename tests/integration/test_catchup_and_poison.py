"""A catch-up held to the true end of a partition, and a partition rebuilt past a poisoned
record: on the broker the tests run on, with real worker processes where one is needed."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaProducer

from stream.worker.catchup import Ends, committed
from tests.cluster import Reader, metric, produce, send_batches
from tests.factories import visit

pytestmark = pytest.mark.integration


def test_read_marks_wait_for_the_offset_after_the_last_record(settings):
    """The embedded broker reports the base offset of a partition's last batch, plus one,
    as its end: ten records in one batch and five in another read as 11, not 15. The
    probe behind the read marks finds 15, and the committed offsets start at 0."""
    topic = settings.topic_events
    send_batches(settings.broker, topic, (10, 5), 1)

    async def ask() -> tuple[dict, dict]:
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                    group_id=None, fetch_max_wait_ms=100)
        await consumer.start()
        try:
            ends = Ends()
            tps = [TopicPartition(topic, 1), TopicPartition(topic, 2)]
            first = await ends.ask(consumer, tps)
            assert await ends.ask(consumer, tps) == first  # the end had not moved
            return first, await committed(settings, [(topic, 1), (topic, 2)])
        finally:
            await consumer.stop()

    end, start = asyncio.run(ask())
    assert {(tp.topic, tp.partition): n for tp, n in end.items()} == {(topic, 1): 15,
                                                                       (topic, 2): 0}
    assert start == {(topic, 1): 0, (topic, 2): 0}


def test_a_poisoned_changelog_record_is_skipped_counted_and_the_worker_runs_on(
        settings, spawn_worker):
    # Records no worker could have written, at the start of every state and escalation
    # partition: not JSON, JSON of another shape, a visit from before the contract bounded
    # its instants, an escalation record of the wrong shape.
    poison = [b"\xff not json", b"[1, 2, 3]",
              b'{"p": 0, "visits": [{"id": "old", "s": ["old", "c", ["w"], -62135596800.0, '
              b'-62135594000.0, 52.6, 1.2, 200.0, null, "medium", false, false, false, [], [], '
              b'null, null, null, null, null, false]}], "deleted": [], "pending": null, '
              b'"b": 0, "bt": 0.0}']
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    for p in range(settings.partitions):
        for value in poison:
            producer.send(settings.topic_state, value, partition=p)
        producer.send(settings.topic_escalations, b'{"escalation_id": 7}', partition=p)
    producer.flush()
    producer.close()
    worker = spawn_worker("w1")
    worker.wait_ready()
    reader = Reader(settings, settings.topic_escalations)
    now = time.time()
    produce(settings, settings.topic_roster, [[
        visit(f"v{i}", client_id=f"c{i}", start=now, late_after_s=2, missed_after_s=600)
        for i in range(4)]])
    reader.until(lambda r: sum(e.get("kind") == "late"
                               for e in r.records[settings.topic_escalations]) == 4,
                 timeout_s=60)
    port = worker.settings.web_port
    assert metric(port, 'ecm_records_skipped_total{where="state"}') == 3 * settings.partitions
    assert metric(port, 'ecm_records_skipped_total{where="escalations"}') == settings.partitions
    assert worker.log().count("[ERROR]") >= 4 * settings.partitions
    assert worker.process is not None and worker.process.poll() is None
