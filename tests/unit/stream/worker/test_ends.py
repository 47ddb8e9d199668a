"""The read marks' probe on a partition that ends with a control record (stream/worker/
catchup.py, ``Ends``).

A topic written by a transactional producer ends with a commit marker, which no consumer
is given: the fetch at the reported end returns no record, but the consumer's position
moves past the marker. The embedded broker has no transactions (InitProducerId fails), so
the consumer is a stand-in that behaves as aiokafka's does."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition

from stream.worker.catchup import Ends

TP = TopicPartition("ecm.events", 0)


class _Consumer:
    """Records up to ``last_record``, then control records up to ``end``."""

    def __init__(self, last_record: int, end: int) -> None:
        self.last_record, self.end = last_record, end
        self.positions: dict[TopicPartition, int] = {}
        self.fetches = 0

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.end for tp in tps}

    def assign(self, tps: list[TopicPartition]) -> None:
        self.positions = {tp: 0 for tp in tps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def getmany(self, *tps: TopicPartition, **_: Any) -> dict[TopicPartition, list[Any]]:
        self.fetches += 1
        await asyncio.sleep(0.01)
        out = {}
        for tp in tps:
            at = self.positions[tp]
            records = [_Record(o) for o in range(at, self.last_record + 1)]
            # Past the records and the markers after them.
            self.positions[tp] = max(self.end, self.last_record + 1)
            if records:
                out[tp] = records
        return out

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]


class _Record:
    def __init__(self, offset: int) -> None:
        self.offset = offset


def test_a_partition_ending_with_a_commit_marker_has_a_known_end_at_once():
    consumer = _Consumer(last_record=9, end=11)  # records 0-9, the marker at 10
    found = asyncio.run(Ends().ask(consumer, [TP]))  # type: ignore[arg-type]
    assert found == {TP: 11}
    assert consumer.fetches == 1


def test_the_batch_at_the_reported_end_still_gives_the_true_end():
    consumer = _Consumer(last_record=14, end=11)  # the embedded broker: 15 records, says 11
    assert asyncio.run(Ends().ask(consumer, [TP])) == {TP: 15}  # type: ignore[arg-type]
