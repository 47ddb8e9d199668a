"""Rebuild a partition's detector from its changelog and escalation partitions.

Read with a plain consumer outside the group (manual assignment, no commits), from the
beginning to the end offset seen when the read started. The worker that owned the partition
before has stopped writing to it by then: Kafka revokes a partition before it assigns it
again, and a worker finishes its in-flight sends when it is revoked.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.clock import Clock
from stream.detector import PartitionDetector
from stream.errors import RecoveryError
from stream.settings import Settings

log = logging.getLogger(__name__)


async def load_partition(settings: Settings, partition: int, clock: Clock) -> PartitionDetector:
    detector = PartitionDetector(partition, settings, clock)
    deltas = await read_partition(settings, settings.topic_state, partition)
    escalations = await read_partition(settings, settings.topic_escalations, partition)
    detector.restore(deltas, escalations)
    log.info("partition %d restored: %d visits, %d escalation records, %d pending events",
             partition, len(detector.visits), len(detector.book.records),
             len(detector.pending))
    return detector


async def read_partition(settings: Settings, topic: str, partition: int) -> list[dict[str, Any]]:
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        docs: list[dict[str, Any]] = []
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=10_000)
            for record in batch.get(tp, ()):
                if record.value is None:
                    continue
                try:
                    docs.append(orjson.loads(record.value))
                except orjson.JSONDecodeError as exc:
                    raise RecoveryError(f"{topic}[{partition}]@{record.offset} is not JSON") from exc
        return docs
    finally:
        await consumer.stop()
