"""The read marks' probe against a slow broker: every response 300 ms late.

The probe finds a partition's true end by reading the batch at the end the embedded broker
reports (stream/worker/catchup.py, ``Ends``). A fetch that answers after the quiet interval
is slow, not empty: when the probe gave up on it, a partition whose end kept moving never
had a known end, its read mark never moved, and its deadlines waited out the run.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.broker import EmbeddedBroker, free_port
from stream.worker.catchup import Ends
from tests.chaos.proxy import FaultProxy
from tests.cluster import send_batches

pytestmark = pytest.mark.integration

DELAY_S = 0.3


def test_the_true_end_is_found_when_every_response_is_late():
    listen, advertised = free_port(), free_port()
    with EmbeddedBroker(listen, advertised_port=advertised) as broker:
        proxy = FaultProxy(advertised, listen,
                           lambda client: not client.startswith("kafka-python")).start()
        try:
            topic = "slow-ends"
            send_batches(broker.bootstrap, topic, (10, 5), 0)
            proxy.delay_s = DELAY_S

            async def ask() -> list[dict[TopicPartition, int]]:
                consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap,
                                            group_id=None, fetch_max_wait_ms=100)
                await consumer.start()
                try:
                    ends, tp, found = Ends(), TopicPartition(topic, 0), []
                    found.append(await ends.ask(consumer, [tp]))
                    await asyncio.to_thread(send_batches, broker.bootstrap, topic, (3,), 0)
                    found.append(await ends.ask(consumer, [tp]))
                    return found
                finally:
                    await consumer.stop()

            first, second = asyncio.run(ask())
        finally:
            proxy.stop()
    tp = TopicPartition("slow-ends", 0)
    assert first == {tp: 15}
    assert second == {tp: 18}
