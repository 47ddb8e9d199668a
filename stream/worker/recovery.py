"""Rebuild a partition's detector from its store and its changelog and escalation partitions.

Both topics are read with one plain consumer outside the group (manual assignment, no
commits), from the store's offsets to the end offset seen when the read started; for
``memory://``, from the partition's last checkpoint (stream/state/checkpoint.py), else from the
beginning. The worker that owned the partition before has stopped writing to it by then:
Kafka revokes a partition before it assigns it again, and a worker finishes its in-flight
sends when it is revoked.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.clock import Clock
from stream.contract import Codec
from stream.errors import RecoveryError
from stream.rules.detector import PartitionDetector
from stream.settings import Settings
from stream.state import keys as K
from stream.state.store import PartitionStore

log = logging.getLogger(__name__)


async def load_partition(settings: Settings, partition: int, clock: Clock,
                         store: PartitionStore, codec: Codec | None = None
                         ) -> PartitionDetector:
    detector = PartitionDetector(partition, settings, clock, codec)
    snap = store.load()
    state = TopicPartition(settings.topic_state, partition)
    esc = TopicPartition(settings.topic_escalations, partition)
    # A fetch at a partition's end waits fetch_max_wait_ms for records: at aiokafka's
    # default (500 ms) the offset lookups and every read's tail waited that long, and a
    # worker's first batch waited for its empty partitions' rebuilds.
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest",
                                fetch_max_wait_ms=_FETCH_MAX_WAIT_MS)
    await consumer.start()
    try:
        consumer.assign([state, esc])
        end = await consumer.end_offsets([state, esc])
        begin = await consumer.beginning_offsets([state, esc])
        stale = None
        if not (await _reaches(consumer, state, snap.state_offset, end[state])
                and await _reaches(consumer, esc, snap.escalations_offset, end[esc])):
            stale = "the local store is ahead of the topics"
        elif snap.state_offset and (snap.state_offset < begin[state]
                                    or snap.escalations_offset < begin[esc]):
            stale = "the topics' retention dropped records the local store has not read"
        if stale is not None:
            log.warning("partition %d: %s; rebuilding from the topics", partition, stale)
            store.reset()
            snap = store.load()
        # The partition's last changelog message: a replay starts at its ``b`` (the first
        # offset of its last complete checkpoint), and the next checkpoint is due by age
        # from its ``bt`` (when that checkpoint began).
        tail_from = max(0, end[state] - 1)
        tail, tail_read = await _read(consumer, state, tail_from, end[state])
        last = tail[-1][1] if tail else None
        base = int(last.get(K.BASE, 0)) if last else 0
        # An empty store replays from the last checkpoint, and the escalation records from
        # where the checkpoint says the book it carries ends; a store replays both from its
        # own positions (what it reflects already includes the deletions before them).
        start = snap.state_offset or base
        if start == tail_from:  # read already: an empty partition, or a checkpoint's last
            deltas, read = tail, tail_read
        else:
            deltas, read = await _read(consumer, state, start, end[state])
        esc_start = snap.escalations_offset
        if not snap.state_offset and deltas and deltas[0][0] == base:
            esc_start = int(deltas[0][1].get(K.ESCALATIONS_FROM, 0))
        if not snap.state_offset and (base < begin[state] or esc_start < begin[esc]):
            log.error("partition %d: its last checkpoint (ecm.state from %d, ecm.escalations "
                      "from %d) is older than the topics' retention (they start at %d and %d): "
                      "rebuilt from what is left, so escalations may be raised again",
                      partition, base, esc_start, begin[state], begin[esc])
        escalations, _ = await _read(consumer, esc, esc_start, end[esc])
    finally:
        await consumer.stop()
    detector.restore([snap.as_delta()] + [d for _, d in deltas],
                     snap.escalations + [e for _, e in escalations])
    # A last message without a base time comes from before checkpoints had an age.
    detector.checkpointer.restored(
        base, float(last.get(K.BASE_TIME, 0.0)) if last is not None else None, read,
        escalations[-1][0] + 1 if escalations else esc_start)
    for offset, delta in deltas:
        store.apply_delta(delta, offset)
    if escalations:
        store.apply_escalations([e for _, e in escalations], escalations[-1][0])
    log.info("partition %d restored: %d visits, %d escalation records, %d pending events "
             "(%d changelog and %d escalation records read; checkpoint at %d from %.3f, "
             "escalations from %d)", partition, len(detector.visits),
             len(detector.book.records), len(detector.pending), len(deltas), len(escalations),
             base, detector.checkpointer.at, esc_start)
    return detector


async def _reaches(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, end: int) -> bool:
    """Whether the topic holds every record before ``offset`` (the store's position).

    Beyond the reported end offset (which can fall short, see :func:`_read`), the record
    just before ``offset`` is looked up.
    """
    if offset <= end:
        return True
    consumer.seek(tp, offset - 1)
    batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
    return any(r.offset == offset - 1 for r in batch.get(tp, ()))


# After the reported end offset, read on until the partition has been quiet this long.
_TAIL_QUIET_MS = 200
_FETCH_MAX_WAIT_MS = 100


async def _read(consumer: AIOKafkaConsumer, tp: TopicPartition, start: int,
                end: int) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """``(offset, document)`` of every record of ``tp`` from ``start`` to its end, and the
    bytes read.

    ``end`` is the end offset reported when the read started; records found beyond it are
    read too. The embedded broker reports the base offset of a partition's last record
    batch as its end, so the last records of a batch sent in one request (escalations of
    one sweep, for instance) lie beyond it: measured, 9 records at offsets 0-8 with an end
    offset of 7. Stopping at the reported end lost them, and the new owner opened those
    escalations a second time. The previous owner has stopped writing by then, so the
    partition's true end is where it falls quiet.
    """
    consumer.seek(tp, start)
    docs: list[tuple[int, dict[str, Any]]] = []
    read = 0
    while True:
        past_end = await consumer.position(tp) >= end
        batch = await consumer.getmany(tp, timeout_ms=_TAIL_QUIET_MS if past_end else 1000,
                                       max_records=10_000)
        records = batch.get(tp, ())
        if not records and past_end:
            return docs, read
        for record in records:
            if record.value is None:
                continue
            read += len(record.value)
            try:
                docs.append((record.offset, orjson.loads(record.value)))
            except orjson.JSONDecodeError as exc:
                raise RecoveryError(
                    f"{tp.topic}[{tp.partition}]@{record.offset} is not JSON") from exc
