"""Where a worker stands in its partitions: what it has processed, where the group's
committed offsets put it, and where each partition truly ends.

Absence is the signal only for input that has been read: a partition's deadlines wait for
the read marks of every input (stream/worker/watermark.py, stream/rules/inputs.py), and a
read mark needs the router's position in its input partition (the committed offset it
started from, then each record it processed) and the partition's end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.security import connection
from stream.settings import Settings


class CatchUp:
    """The last offset processed of each partition; pure bookkeeping."""

    def __init__(self) -> None:
        self.processed: dict[Hashable, int] = {}

    def seen(self, tp: Hashable, offset: int) -> None:
        if offset > self.processed.get(tp, -1):
            self.processed[tp] = offset


async def committed(settings: Settings,
                    tps: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The group's next offsets (committed, else the log start): where the worker's
    consumer starts reading each partition."""
    parts = [TopicPartition(t, p) for t, p in tps]
    if not parts:
        return {}
    consumer = AIOKafkaConsumer(**connection(settings),
                                group_id=settings.app_id, enable_auto_commit=False,
                                fetch_max_wait_ms=_FETCH_MAX_WAIT_MS)
    await consumer.start()
    try:
        begin = await consumer.beginning_offsets(parts)
        start = {}
        for tp in parts:
            offset = await consumer.committed(tp)
            start[(tp.topic, tp.partition)] = begin[tp] if offset is None else offset
        return start
    finally:
        await consumer.stop()


# A fetch at a partition's end waits this long for records before it answers empty.
_FETCH_MAX_WAIT_MS = 100
# Reading a partition's last batch waits this long for it, a fetch at a time, for at most
# the budget in all: below the probe's own timeout (stream/worker/runtime.py), which takes
# a broker that does not answer for one out of reach. A batch removed by retention meanwhile
# never comes; the partition is left out and asked again at the next probe.
_QUIET_MS = 200
_FIND_BUDGET_S = 1.0


class Ends:
    """The true end offsets of partitions asked about again and again (the read marks'
    probe, every sweep interval).

    Kafka reports it as the end offset. The embedded broker (Tansu 0.6.0) reports the base
    offset of the partition's last record batch plus one: ten records in one batch and five
    in another read as 11, not 15, and a mark given at 11 would let a deadline fall due
    before the last check-ins of a batch were read. So the batch at the reported end is
    read: only when the reported end moved, since a batch, once written, never grows. On a
    Kafka whose producers use transactions the last offset may be a commit marker, which no
    consumer is given: the consumer's position past it gives the end."""

    def __init__(self) -> None:
        self._known: dict[TopicPartition, tuple[int, int]] = {}  # reported -> true end

    async def ask(self, consumer: AIOKafkaConsumer,
                  tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        reported = await consumer.end_offsets(tps)
        out: dict[TopicPartition, int] = {}
        moved = []
        for tp in tps:
            known = self._known.get(tp)
            if known is not None and known[0] == reported[tp]:
                out[tp] = known[1]
            elif reported[tp] == 0:
                out[tp] = 0
            else:
                moved.append(tp)
        if moved:
            consumer.assign(moved)
            for tp in moved:
                consumer.seek(tp, reported[tp] - 1)
            found = {tp: reported[tp] for tp in moved}
            waiting = set(moved)
            # The first batch at the reported end comes whole in one fetch. A fetch that
            # comes back empty is slow more often than not (a slow broker's every response
            # is late): asked again within the budget, not given up on, or a partition
            # whose end keeps moving would never have a known end.
            give_up = asyncio.get_running_loop().time() + _FIND_BUDGET_S
            while waiting and asyncio.get_running_loop().time() < give_up:
                batch = await consumer.getmany(*waiting, timeout_ms=_QUIET_MS,
                                               max_records=10_000)
                for tp, records in batch.items():
                    if records:
                        found[tp] = max(found[tp], records[-1].offset + 1)
                        waiting.discard(tp)
                for tp in list(waiting):
                    # No record, yet the position moved past the reported end's last
                    # offset: control records (a transaction's commit marker), which no
                    # consumer is given, end the partition there.
                    position = await consumer.position(tp)
                    if position >= reported[tp]:
                        found[tp] = max(found[tp], position)
                        waiting.discard(tp)
            for tp in moved:
                if tp not in waiting:  # else unknown this time: left out, asked again
                    out[tp] = found[tp]
                    self._known[tp] = (reported[tp], found[tp])
        return out


async def true_end(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    """The partition's true end (:class:`Ends`), asked until it is known: the batch at
    the reported end exists, so a fetch that came back empty was slow, not an end (on a
    loaded machine a first fetch can take longer than the quiet interval). The caller
    bounds the wait."""
    ends = Ends()
    while True:
        known = await ends.ask(consumer, [tp])
        if tp in known:
            return known[tp]
