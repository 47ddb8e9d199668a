"""Hold the deadline sweep until a worker has worked off the backlog it was handed.

Absence is the signal only for input that has been read. A worker that takes over
partitions after a crash, or starts after an outage, finds check-ins waiting in Kafka;
sweeping before reading them would call visits missed that were attended. So after every
assignment the sweep waits, in two phases, until the worker has processed:

1. its input partitions (roster, events) up to their end offsets at assignment, which
   routes their backlog into the work topic, then
2. its work partitions up to their end offsets after phase 1.

Deadlines do not get lost while the sweep is held: they stay due and are raised, with the
delay visible in ``detected_at - deadline``, once the gate opens. A worker that cannot
catch up within ``ECM_CATCHUP_MAX_HOLD_S`` opens the gate anyway: a late alert beats none.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.settings import Settings


class CatchUp:
    """Which partitions must reach which offsets; pure bookkeeping."""

    def __init__(self) -> None:
        self.targets: dict[Hashable, int] = {}
        self.processed: dict[Hashable, int] = {}

    def expect(self, end: dict[Hashable, int], start: dict[Hashable, int]) -> None:
        """Wait for every partition whose start (next offset to read) is below its end."""
        self.targets = {tp: e for tp, e in end.items()
                        if max(start.get(tp, 0), self.processed.get(tp, -1) + 1) < e}

    def seen(self, tp: Hashable, offset: int) -> None:
        if offset > self.processed.get(tp, -1):
            self.processed[tp] = offset

    def done(self) -> bool:
        return all(self.processed.get(tp, -1) >= end - 1 for tp, end in self.targets.items())

    def remaining(self) -> int:
        return sum(max(0, end - 1 - self.processed.get(tp, -1)) for tp, end in self.targets.items())


async def positions(settings: Settings, tps: Iterable[tuple[str, int]]) -> tuple[
        dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """True end offsets (:func:`true_ends`) and the group's next offsets (committed, else
    the log start)."""
    parts = [TopicPartition(t, p) for t, p in tps]
    if not parts:
        return {}, {}
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                group_id=settings.app_id, enable_auto_commit=False,
                                fetch_max_wait_ms=_FETCH_MAX_WAIT_MS)
    await consumer.start()
    try:
        end = await true_ends(consumer, parts)
        begin = await consumer.beginning_offsets(parts)
        start = {}
        for tp in parts:
            committed = await consumer.committed(tp)
            start[(tp.topic, tp.partition)] = begin[tp] if committed is None else committed
        return {(tp.topic, tp.partition): end[tp] for tp in parts}, start
    finally:
        await consumer.stop()


# A fetch at a partition's end waits this long for records before it answers empty.
_FETCH_MAX_WAIT_MS = 100
# Past the reported end, records are read until the partitions are quiet this long.
_QUIET_MS = 200


async def true_ends(consumer: AIOKafkaConsumer,
                    tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """The offset after each partition's last record.

    Kafka reports it as the end offset. The embedded broker (Tansu 0.6.0) reports the base
    offset of the partition's last record batch plus one: ten records in one batch and five
    in another read as 11, not 15, and a catch-up held to that would sweep before the last
    check-ins of a batch were read. So the last batch is read: from the reported end minus
    one to where the partitions fall quiet. The consumer is assigned ``tps`` for it."""
    ends = await consumer.end_offsets(tps)
    reading = [tp for tp in tps if ends[tp] > 0]
    if not reading:
        return dict(ends)
    consumer.assign(reading)
    for tp in reading:
        consumer.seek(tp, ends[tp] - 1)
    found = dict(ends)
    while True:
        batch = await consumer.getmany(*reading, timeout_ms=_QUIET_MS, max_records=10_000)
        if not any(batch.values()):
            return found
        for tp, records in batch.items():
            found[tp] = max(found[tp], records[-1].offset + 1)


class Ends:
    """The true end offsets of partitions asked about again and again (the read marks'
    probe, every sweep interval): a partition's last batch is read (:func:`true_ends`)
    only when its reported end moved, since a batch, once written, never grows."""

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
            # The first batch at the reported end comes whole in one fetch.
            while waiting:
                batch = await consumer.getmany(*waiting, timeout_ms=_QUIET_MS,
                                               max_records=10_000)
                if not any(batch.values()):
                    break
                for tp, records in batch.items():
                    if records:
                        found[tp] = max(found[tp], records[-1].offset + 1)
                        waiting.discard(tp)
            for tp in moved:
                if tp not in waiting:  # else unknown this time: left out, asked again
                    out[tp] = found[tp]
                    self._known[tp] = (reported[tp], found[tp])
        return out
