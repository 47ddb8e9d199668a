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
from collections.abc import Callable
from typing import Any

import msgspec
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.clock import Clock
from stream.contract import Codec
from stream.contract.records import Escalation
from stream.rules.detector import PartitionDetector
from stream.security import connection
from stream.settings import Settings
from stream.state import keys as K
from stream.state.store import PartitionStore

log = logging.getLogger(__name__)


async def load_partition(settings: Settings, partition: int, clock: Clock,
                         store: PartitionStore, codec: Codec | None = None,
                         skipped: Callable[[str], None] = lambda topic: None
                         ) -> PartitionDetector:
    """The partition's detector, rebuilt. What cannot be read back is skipped, logged at
    error with its offset, and told to ``skipped`` ("state" or "escalations", by the topic
    it was in): a poisoned record must not stop the partition from loading at every
    restart. A record of the last checkpoint that cannot be read (a corrupt or truncated
    slice) would lose the visits only it held: the rebuild falls back to the checkpoint
    before it, whose state and the deltas since hold the same. What no record holds again
    is stated, by partition and offset (:func:`_losses`)."""
    snap = store.load()
    state = TopicPartition(settings.topic_state, partition)
    esc = TopicPartition(settings.topic_escalations, partition)
    # A fetch at a partition's end waits fetch_max_wait_ms for records: at aiokafka's
    # default (500 ms) the offset lookups and every read's tail waited that long, and a
    # worker's first batch waited for its empty partitions' rebuilds.
    consumer = AIOKafkaConsumer(**connection(settings),
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
        last = _last_document(tail)
        if not last and tail_from > begin[state]:
            # The last record is unreadable (poisoned, or a foreign write): the base is in
            # the last one that names it, a little further back. Without it the rebuild
            # would replay the whole changelog, or lose what the retention dropped.
            tail_from = max(begin[state], end[state] - _TAIL_BACK)
            tail, tail_read = await _read(consumer, state, tail_from, end[state])
            last = _last_document(tail)
            if not last:
                log.error("partition %d: none of the last %d ecm.state records names its "
                          "checkpoint; rebuilding from the first record", partition,
                          len(tail))
        base = _number(last.get(K.BASE), int) or 0
        base_time = _number(last.get(K.BASE_TIME), float) if last else None
        superseded: list[tuple[int, int | None]] = []  # checkpoints fallen back from
        while True:
            detector = PartitionDetector(partition, settings, clock, codec)
            # An empty store replays from the last checkpoint, and the escalation records
            # from where the checkpoint says the book it carries ends; a store replays both
            # from its own positions (what it reflects already includes the deletions
            # before them).
            start = snap.state_offset or base
            if start == tail_from:  # read already: an empty partition, or a checkpoint's last
                deltas, read = tail, tail_read
            else:
                deltas, read = await _read(consumer, state, start, end[state])
            esc_start = snap.escalations_offset
            if not snap.state_offset and deltas and deltas[0][0] == base:
                first = deltas[0][1]
                esc_start = (_number(first.get(K.ESCALATIONS_FROM), int) or 0
                             if type(first) is dict else 0)
            if not snap.state_offset and (base < begin[state] or esc_start < begin[esc]):
                log.error("partition %d: its last checkpoint (ecm.state from %d, "
                          "ecm.escalations from %d) is older than the topics' retention (they "
                          "start at %d and %d): rebuilt from what is left, so escalations may "
                          "be raised again", partition, base, esc_start, begin[state],
                          begin[esc])
            escalations, _ = await _read(consumer, esc, esc_start, end[esc])
            detector.restore([snap.as_delta()] + [d for _, d in deltas],
                             snap.escalations + [e for _, e in escalations])
            bad = _where(detector, deltas, escalations, len(snap.escalations))
            if snap.state_offset or not _checkpoint_unreadable(bad, deltas, base, settings):
                break
            earlier = await _base_before(consumer, state, base, begin[state])
            if earlier is None:
                log.error("partition %d: a record of the checkpoint at ecm.state offset %d "
                          "cannot be read, and no earlier checkpoint is left to rebuild "
                          "from", partition, base)
                break
            log.warning("partition %d: a record of the checkpoint at ecm.state offset %d "
                        "cannot be read; rebuilding from the checkpoint before it, at %d",
                        partition, base, earlier[0])
            superseded.append(_checkpoint_span(deltas, base))
            base, base_time = earlier
    finally:
        await consumer.stop()
    for topic, offset, why in bad:
        log.error("partition %d: skipped %s at offset %s while rebuilding: %s", partition,
                  topic, offset, why)
        skipped("state" if topic == settings.topic_state else "escalations")
    for line in _losses(bad, superseded, settings):
        log.error("partition %d: %s", partition, line)
    # A last message without a base time comes from before checkpoints had an age.
    detector.checkpointer.restored(
        base, base_time, read, escalations[-1][0] + 1 if escalations else esc_start)
    bad_state = {offset for topic, offset, _ in bad if topic == settings.topic_state}
    for offset, delta in deltas:
        if offset not in bad_state:
            store.apply_delta(delta, offset)
    if escalations:
        store.apply_escalations([r for r in map(_escalation, escalations) if r is not None],
                                escalations[-1][0])
    log.info("partition %d restored: %d visits, %d escalation records, %d pending events "
             "(%d changelog and %d escalation records read; checkpoint at %d from %.3f, "
             "escalations from %d)", partition, len(detector.visits),
             len(detector.book.records), len(detector.pending), len(deltas), len(escalations),
             base, detector.checkpointer.at, esc_start)
    return detector


def _checkpoint_span(deltas: list[tuple[int, Any]], base: int) -> tuple[int, int | None]:
    """Where the checkpoint at ``base`` may lie: from ``base`` to the first document that
    names it as its base (written once its last slice was), or to the end (None)."""
    complete = next((o for o, d in deltas if type(d) is dict and d.get(K.BASE) == base), None)
    return base, complete


def _within(offset: Any, span: tuple[int, int | None]) -> bool:
    return type(offset) is int and span[0] <= offset and (span[1] is None or offset < span[1])


def _checkpoint_unreadable(bad: list[tuple[str, Any, str]], deltas: list[tuple[int, Any]],
                           base: int, settings: Settings) -> bool:
    """Whether a record skipped may be a slice of the checkpoint the replay started from.
    A checkpoint at 0 is the partition's beginning: nothing is before it."""
    if not base:
        return False
    span = _checkpoint_span(deltas, base)
    return any(topic == settings.topic_state and _within(offset, span)
               for topic, offset, _ in bad)


async def _base_before(consumer: AIOKafkaConsumer, tp: TopicPartition, base: int,
                       begin: int) -> tuple[int, float | None] | None:
    """The checkpoint before the one at ``base``, and when it began: the base the record
    just before ``base`` names. None where that record is gone, unreadable or names none
    earlier."""
    if base - 1 < begin:
        return None
    docs, _ = await _read(consumer, tp, base - 1, base)
    doc = next((d for o, d in docs if o == base - 1), None)
    if type(doc) is not dict:
        return None
    earlier = _number(doc.get(K.BASE), int)
    if earlier is None or not begin <= earlier < base:
        return None
    return earlier, _number(doc.get(K.BASE_TIME), float)


def _losses(bad: list[tuple[str, Any, str]], superseded: list[tuple[int, int | None]],
            settings: Settings) -> list[str]:
    """What the skipped records held that the rebuild could not find again, one line each.

    A changelog record lost is a batch's changes to the partition's visits (their roster
    records, check-ins and check-outs, waiting events); the later records of the same
    visits bring them back as far as they repeat them (a roster record sent again, a
    check-out). One within a checkpoint the rebuild fell back from was most likely a slice
    of it, whose content the earlier checkpoint and the deltas since hold. An escalation
    record lost is recovered by a later record of the same escalation, which carries it
    whole; without one, the book keeps the record before it (a status lost), or none (the
    escalation may be raised again: a duplicate, never a loss). Nothing of a record's
    values is said: they may be anything."""
    out = []
    state = [o for t, o, _ in bad if t == settings.topic_state and type(o) is int]
    covered = [o for o in state if any(_within(o, span) for span in superseded)]
    lost = [o for o in state if o not in covered]
    if covered:
        out.append(f"{len(covered)} ecm.state record(s) unreadable in a checkpoint the "
                   f"rebuild fell back from (offsets {_offsets(covered)}): a slice's visits "
                   "were read from the checkpoint before it; were one a delta written while "
                   "that checkpoint was under way, its changes are lost unless a later "
                   "record repeats them")
    if lost:
        out.append(f"{len(lost)} ecm.state record(s) lost (offsets {_offsets(lost)}): the "
                   "check-ins, check-outs, roster records and waiting events they carried "
                   "are missing from the rebuilt state unless a later record repeats them; "
                   "a visit they changed may be escalated as if they had not happened")
    esc = [o for t, o, _ in bad if t == settings.topic_escalations and type(o) is int]
    if esc:
        out.append(f"{len(esc)} ecm.escalations record(s) unreadable (offsets "
                   f"{_offsets(esc)}): unless a later record of the same escalation follows, "
                   "the book holds the record before it, so the status it carried is "
                   "missing; where it was the escalation's first record, the escalation may "
                   "be raised again")
    return out


def _offsets(offsets: list[int]) -> str:
    shown = ", ".join(map(str, offsets[:10]))
    return shown + (f" and {len(offsets) - 10} more" if len(offsets) > 10 else "")


def _last_document(tail: list[tuple[int, Any]]) -> dict[str, Any]:
    """The last changelog document of ``tail`` that names the partition's checkpoint, or
    an empty one (none, or none readable)."""
    for _, doc in reversed(tail):
        if type(doc) is dict and _number(doc.get(K.BASE), int) is not None:
            return doc
    return {}


def _number(value: Any, kind: type) -> Any:
    """``value`` as ``kind`` if it is a number, else None (a document of another shape)."""
    if type(value) in (int, float):
        return kind(value)
    return None


def _escalation(entry: tuple[int, Any]) -> Escalation | None:
    try:
        return msgspec.convert(entry[1], Escalation)
    except msgspec.ValidationError:
        return None


def _where(detector: PartitionDetector, deltas: list[tuple[int, Any]],
           escalations: list[tuple[int, Any]], stored: int) -> list[tuple[str, Any, str]]:
    """What the detector skipped while restoring, as ``(topic, offset, why)``, once per
    record (the first reason given for it): the offset of the document its position names
    (position 0 of the changelog, and the first ``stored`` escalation records, are the
    local store's)."""
    out = []
    seen: set[tuple[str, Any]] = set()
    s = detector.settings
    for where, i, why in detector.skipped:
        if where == "ecm.state":
            topic = s.topic_state
            offset: Any = (deltas[i - 1][0] if 0 < i <= len(deltas) else
                           "the local store" if i == 0 else "a checkpoint slice")
        else:
            topic = s.topic_escalations
            offset = escalations[i - stored][0] if i >= stored else "the local store"
        if type(offset) is int and (topic, offset) in seen:
            continue
        seen.add((topic, offset))
        out.append((topic, offset, why))
    detector.skipped = []
    return out


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


# A record that is not JSON, as read back: a document of no known shape.
_NOT_JSON = "<not JSON>"

# How far back the last readable changelog document is looked for, when the last is not.
_TAIL_BACK = 256
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
            except orjson.JSONDecodeError:
                # Kept as what it is: the detector skips it, and says where it was.
                docs.append((record.offset, _NOT_JSON))
