"""After an assignment a worker reads back what was dead-lettered for the records it will
replay, against the real broker: the keys in the dead-letter partitions of its partitions'
numbers written since their committed records reached Kafka, and nothing for a partition
with nothing to replay."""

from __future__ import annotations

import asyncio

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from stream.worker.deadletters import written_since

pytestmark = pytest.mark.integration


def test_the_keys_a_replay_could_repeat_are_read_back(settings):
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=0)
    for _ in range(5):
        producer.send(settings.topic_events, b"{", partition=1)
        producer.send(settings.topic_events, b"{", partition=2)
    producer.flush()
    for n in (3, 4):  # written for the records after the committed offset (3)
        producer.send(settings.topic_deadletter, b"{}", key=f"ev:1:{n}:0".encode(), partition=1)
    producer.send(settings.topic_deadletter, b"{}", key=b"ev:2:4:0", partition=2)
    producer.flush()
    producer.close()
    group = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                          group_id=settings.app_id, enable_auto_commit=False)
    group.commit({TopicPartition(settings.topic_events, 1): OffsetAndMetadata(3, ""),
                  TopicPartition(settings.topic_events, 2): OffsetAndMetadata(5, "")})
    group.close()
    keys = asyncio.run(written_since(settings, [(settings.topic_events, 1),
                                                (settings.topic_events, 2)]))
    # Partition 2 is read to its end: nothing to replay, nothing read back.
    assert keys == {b"ev:1:3:0", b"ev:1:4:0"}
