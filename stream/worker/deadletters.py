"""Dead letters sent once, replays or not.

A rejection is decided again when its record is replayed: after a crash, or when a
rebalance hands uncommitted input to another worker. Its dead letter has a deterministic
key (its source position, ``deadletter_key``), so a replay is known by it:

- the keys this worker sent lately are held (:class:`Sent`), for replays within one
  process (a router that forwards a batch twice, a partition revoked and given back);
- when a worker is assigned partitions, it reads back what was dead-lettered for the
  records it will replay: each stage writes its dead letters to the ``ecm.deadletter``
  partition of its own partition number (the router the input partition's, the detector
  its work partition's), and a replay starts at the partition's committed offset, so the
  keys written since the committed record reached Kafka (:func:`written_since`) are all
  a replay can repeat. Dead letters wait for that read-back before they are sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from stream.security import connection
from stream.settings import Settings
from stream.worker.catchup import true_end

log = logging.getLogger(__name__)

# Keys of dead letters held, at most: far more than a replay repeats.
_HELD = 200_000
# Dead letters are read back from this long before the oldest committed record reached
# Kafka: the producers' clocks (the gateways', the workers') may disagree.
_CLOCK_MARGIN_S = 300.0
# Read back in chunks, from the partition's end towards its beginning.
_CHUNK = 2000
_FETCH_MAX_WAIT_MS = 100
_QUIET_MS = 200


class Sent:
    """Keys of dead letters sent or found written, the oldest forgotten first."""

    def __init__(self, held: int = _HELD) -> None:
        self._held = held
        self._keys: dict[bytes, None] = {}

    def __contains__(self, key: bytes) -> bool:
        return key in self._keys

    def add(self, keys: Iterable[bytes]) -> None:
        held = self._keys
        for key in keys:
            held[key] = None
        excess = len(held) - self._held
        if excess > 0:
            for key in list(held)[:excess]:
                del held[key]

    def __len__(self) -> int:
        return len(self._keys)


async def written_since(settings: Settings, tps: Iterable[tuple[str, int]]) -> set[bytes]:
    """The keys of the dead letters a replay of ``tps`` (input and work partitions, from
    the group's committed offsets) could write again: those in the ``ecm.deadletter``
    partitions of the same numbers, written since the oldest committed record of theirs
    reached Kafka. Nothing is read for a partition that has nothing to replay."""
    parts = [TopicPartition(t, p) for t, p in tps]
    if not parts:
        return set()
    consumer = AIOKafkaConsumer(**connection(settings),
                                group_id=settings.app_id, enable_auto_commit=False,
                                auto_offset_reset="earliest",
                                fetch_max_wait_ms=_FETCH_MAX_WAIT_MS)
    await consumer.start()
    try:
        since: dict[int, float] = {}
        for tp in parts:
            committed = await consumer.committed(tp)
            stamp = await _stamp_at(consumer, tp, committed or 0)
            if stamp is not None:
                since[tp.partition] = min(since.get(tp.partition, stamp), stamp)
        keys: set[bytes] = set()
        for partition, stamp in sorted(since.items()):
            dl = TopicPartition(settings.topic_deadletter, partition)
            keys |= await _keys_since(consumer, dl, min(stamp, time.time()) - _CLOCK_MARGIN_S)
        return keys
    finally:
        await consumer.stop()


async def _stamp_at(consumer: AIOKafkaConsumer, tp: TopicPartition,
                    offset: int) -> float | None:
    """When the record at ``offset`` (or the first after it) reached Kafka; None when
    there is none (nothing to replay, or retention took it all)."""
    end = await true_end(consumer, tp)
    if max(offset, (await consumer.beginning_offsets([tp]))[tp]) >= end:
        return None
    consumer.assign([tp])
    consumer.seek(tp, offset)
    return (await _fetch(consumer, tp, 1))[0].timestamp / 1000.0


async def _keys_since(consumer: AIOKafkaConsumer, tp: TopicPartition,
                      since: float) -> set[bytes]:
    """Keys of the partition's records written at or after ``since`` (wall seconds), read
    from its end backwards, a chunk at a time, until a chunk is older."""
    end = await true_end(consumer, tp)
    consumer.assign([tp])
    keys: set[bytes] = set()
    while end > 0:
        start = max(0, end - _CHUNK)
        consumer.seek(tp, start)
        newest = -1.0
        while True:
            records = [r for r in await _fetch(consumer, tp, _CHUNK) if r.offset < end]
            for r in records:
                t = r.timestamp / 1000.0
                newest = max(newest, t)
                if t >= since and r.key is not None:
                    keys.add(r.key)
            if not records or records[-1].offset >= end - 1:
                break
        if newest < since:
            break
        end = start
    return keys


async def _fetch(consumer: AIOKafkaConsumer, tp: TopicPartition,
                 most: int) -> list[ConsumerRecord]:
    """The next records of ``tp``, which are known to exist (they lie before its true
    end): an empty fetch is a slow one, and is asked again. The caller bounds the wait."""
    while True:
        batch = await consumer.getmany(tp, timeout_ms=_QUIET_MS, max_records=most)
        if batch.get(tp):
            return batch[tp]
