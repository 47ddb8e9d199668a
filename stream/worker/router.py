"""Decode raw input messages and route their records to work partitions by client.

Pure code: the Faust agent hands it raw messages and sends what it returns. A message
becomes at most one ``ecm.work`` message per target partition, so batching survives the
repartition.
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream.contract import Codec, Rejection, Source, routing_key
from stream.topics import partition_for

KIND_ROSTER = "roster"
KIND_EVENT = "event"
KIND_ACTION = "action"


@dataclass(slots=True)
class Routed:
    # Per work partition: ``[kind, [topic, partition, offset, index], timestamp, object]``.
    work: dict[int, list[list[Any]]] = field(default_factory=dict)
    # Per partition this worker owns, the records that skip the ``ecm.work`` hop, as the
    # detector takes them (``(kind, object, source)``), and each one's message timestamp.
    local: dict[int, list[tuple[str, dict[str, Any], Source]]] = field(default_factory=dict)
    local_stamps: dict[int, list[float]] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    records: int = 0
    received: dict[str, int] = field(
        default_factory=lambda: {KIND_ROSTER: 0, KIND_EVENT: 0, KIND_ACTION: 0})
    max_bytes: int = 900_000

    # Per work partition: the estimated encoded size of its items (bytes).
    sizes: dict[int, float] = field(default_factory=dict)

    def encoded(self) -> list[tuple[int, bytes]]:
        """``(partition, value)`` messages, each below ``max_bytes`` where its records allow.

        A partition's items are cut, from their estimated size, into as many equal parts as
        should fit, and each part is encoded once; a part that still does not fit is halved.
        A record that does not fit a message alone (its numbers written out longer than it
        wrote them) is rejected, added to :attr:`rejections`.
        """
        out: list[tuple[int, bytes]] = []
        for p, items in self.work.items():
            parts = max(1, min(len(items), math.ceil(self.sizes.get(p, 0.0)
                                                      / (_FILL * self.max_bytes))))
            step = math.ceil(len(items) / parts)
            for k in range(0, len(items), step):
                _encode(p, items[k:k + step], self.max_bytes, out, self.rejections)
        return out


# Parts are cut to this share of the limit, so that an estimate a little short still fits.
_FILL = 0.8
# What a record's envelope in ecm.work adds to its own bytes: kind, source, timestamp.
_ENVELOPE_BYTES = 64


def _encode(p: int, items: list[list[Any]], max_bytes: int, out: list[tuple[int, bytes]],
            rejected: list[Rejection]) -> None:
    """One message for the items, or halves of them until each fits."""
    value = orjson.dumps({"items": items})
    if len(value) <= max_bytes:
        out.append((p, value))
        return
    if len(items) == 1:
        _, src, _, obj = items[0]
        rejected.append(Rejection("value_too_large", f"the record takes {len(value)} bytes "
                                  f"in ecm.work; at most {max_bytes}", orjson.dumps(obj),
                                  Source(*src)))
        return
    half = len(items) // 2
    _encode(p, items[:half], max_bytes, out, rejected)
    _encode(p, items[half:], max_bytes, out, rejected)


def route(messages: Iterable[tuple[Source, bytes | None, float]], roster_topic: str,
          partitions: int, max_bytes: int = 900_000, owned: Container[int] = (),
          keyed: dict[tuple[str, int], bool] | None = None, codec: Codec | None = None,
          actions_topic: str | None = None) -> Routed:
    """Split each message into records, reject what cannot be routed, group the rest.

    Each message is ``(source, value, timestamp)``; the Kafka timestamp (epoch seconds) goes
    along with every record so the detector can measure processing latency.

    A record whose work partition is in ``owned`` (the partitions this worker owns) and is
    the partition number it arrived on goes to :attr:`Routed.local`: it is where its
    client's work belongs, and is handed to the detector without the ``ecm.work`` hop.
    Whether a record takes the hop depends only on its client and the partition it arrived
    on, so the order of one client's records from one input partition is kept.

    A message on an owned partition is validated from its bytes (the one-pass decoder)
    while that partition's messages keep their records: ``keyed`` remembers, per input
    partition, whether most of its last message's records stayed. An unkeyed producer's
    records mostly go elsewhere, through ``ecm.work`` as decoded objects, and decoding its
    messages twice would cost more than the few that stay gain.
    """
    if codec is None:
        codec = Codec()
    out = Routed(max_bytes=max_bytes)
    work = out.work
    sizes = out.sizes
    received = out.received
    routed = 0
    for source, value, timestamp in messages:
        kind = (KIND_ROSTER if source.topic == roster_topic
                else KIND_ACTION if source.topic == actions_topic else KIND_EVENT)
        topic, partition, offset = source.topic, source.partition, source.offset
        if value is not None and len(value) > codec.bounds.max_input_bytes:
            out.rejections.append(Rejection(
                "message_too_large", f"{len(value)} bytes; at most "
                f"{codec.bounds.max_input_bytes}", value, source))
            continue
        local = partition in owned  # its records for this partition skip the hop
        # Records bound for this worker's own detector are validated straight from the
        # bytes where they are well-formed (the one-pass decoder); the rest are decoded to objects.
        tp = (topic, partition)
        # Actions are few: always decoded to objects, and checked by the case rules.
        records: list[Any] | None = (
            codec.records(value, kind == KIND_ROSTER)
            if local and kind != KIND_ACTION and (keyed is None or keyed.get(tp, True))
            else None)
        fast = records is not None
        objects: list[dict[str, Any] | None] | None = None
        rejections: list[Rejection] = []
        if records is None:
            objects, rejections = codec.split(value, source)
            out.rejections += rejections
            records = objects
        # A record re-encodes to about its share of the message, plus its envelope.
        each = len(value or b"") / max(1, len(records)) + _ENVELOPE_BYTES
        mine = None  # this partition's local records, once the message has one
        mine_at = None  # and their timestamps
        stayed = 0  # records of this partition's clients
        for i, obj in enumerate(records):
            p = None  # the record's work partition, once known
            if fast:
                # From the one-pass decoder: validated, or None for a record that needs the
                # full checks. A validated record of this partition's clients goes straight
                # to the detector; any other is routed as its decoded object.
                if obj is not None:
                    p = partition_for(obj.client_id, partitions)
                if p != partition:
                    if objects is None:
                        objects, rejections = codec.split(value, source)
                    obj, p = (objects[i], None) if objects else (None, None)
                    if obj is None:  # rejected by the parse, or held beyond the bounds
                        out.rejections.append(_rejected(rejections, i))
                        continue
            elif obj is None:
                continue  # rejected by the split
            received[kind] += 1
            if p is None:
                key = routing_key(obj)
                if key is None:
                    reason = "missing_field" if obj.get("client_id") is None else "wrong_type"
                    out.rejections.append(Rejection(
                        reason, "client_id must be a non-empty string", orjson.dumps(obj),
                        Source(topic, partition, offset, i)))
                    continue
                p = partition_for(key, partitions)
            routed += 1
            if p == partition and local:
                stayed += 1
                if mine is None:
                    mine = out.local.setdefault(p, [])
                    mine_at = out.local_stamps.setdefault(p, [])
                mine.append((kind, obj, Source(topic, partition, offset, i)))
                mine_at.append(timestamp)  # type: ignore[union-attr]
                continue
            items = work.get(p)
            if items is None:
                items = work[p] = []
                sizes[p] = 0.0
            items.append([kind, [topic, partition, offset, i], timestamp, obj])
            sizes[p] += each
        if keyed is not None and local:
            keyed[tp] = 2 * stayed >= len(records)
    out.records = routed
    return out


def _rejected(rejections: list[Rejection], index: int) -> Rejection:
    """Record ``index``'s rejection: its own, or its message's (which then stands for each
    of its records the one-pass decoder did not keep on this partition)."""
    for r in rejections:
        if r.source.index == index:
            return r
    r = rejections[0]
    s = r.source
    return Rejection(r.reason, r.detail, r.raw, Source(s.topic, s.partition, s.offset, index))


def decode_work(value: bytes) -> tuple[list[tuple[str, dict[str, Any], Source]], list[float],
                                       list[tuple[str, int, float]]]:
    """The records of one ``ecm.work`` message (written by :func:`route`), the Kafka
    timestamps of the input messages they came in, and the read marks it carries
    (stream/worker/watermark.py)."""
    doc = orjson.loads(value)
    records, stamps = work_records(doc["items"])
    marks = doc.get("read")
    return records, stamps, [(str(t), int(p), float(at)) for t, p, at in marks or ()]


def work_records(items: list[list[Any]]) -> tuple[list[tuple[str, dict[str, Any], Source]],
                                                   list[float]]:
    """Routed items as the detector takes them, and their input messages' timestamps."""
    records = [(kind, obj, Source(*src)) for kind, src, _, obj in items]
    return records, [float(t or 0.0) for _, _, t, _ in items]
