"""What the report reads: every visit record, and the last revision of each safeguarding
review, from Kafka or from JSON-lines files.

The visit records go to a JSON-lines staging file in the order read, each with its
sequence number, and DuckDB keeps the last of each visit (load.py): a four-week region's
records need not fit in memory. A record whose visit is scheduled outside the report's days
(UTC) is staged as the visit gone, so that a correction that moves a visit out of the range
takes it out of the report. Records of one visit share a partition (they are keyed by
visit_id), so the last read is the last written.

From Kafka, every partition of ``ecm.visits`` and ``ecm.escalations`` is read from its
beginning to the end offset it had when the report started, then the reading stops: a
report is of what was written before it was asked for, and records arriving meanwhile
cannot keep it from finishing. The end is the larger of the end offset the broker reports
and the high watermark of the partition's first fetch: the embedded broker reports the base
offset of a partition's last record batch plus one (stream/worker/catchup.py, ``Ends``), and
stopping there lost the rest of that batch.

A record that is not a visit record (or an escalation) the report can use is counted and
skipped, never fatal.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, date
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

import msgspec
import orjson

from stream.report import ReportError
from stream.security import connection
from stream.settings import Settings
from stream.timeutil import AwareDatetime

if TYPE_CHECKING:
    from kafka import KafkaConsumer

SAFEGUARDING_KIND = "safeguarding_review"
# A broker that returns nothing for this long while records remain below the end offsets
# is not answering: the report says so rather than waiting for ever.
STALL_S = 60.0


class _VisitHead(msgspec.Struct):
    """The fields every row of the report rests on (stream/contract/schemas/visit.schema.json);
    the others are typed as DuckDB reads them (load.py)."""

    schema_version: Literal[1]
    visit_id: str
    client_id: str
    scheduled_start: AwareDatetime
    outcome: Literal["attended", "attended_no_check_out", "missed", "cancelled"]
    timeliness: Literal["on_time", "late", "missed", "cancelled"]


class _EscalationHead(msgspec.Struct):
    escalation_id: str
    kind: str
    revision: int
    client_id: str
    detected_at: AwareDatetime


_visit_head = msgspec.json.Decoder(_VisitHead)
_escalation_head = msgspec.json.Decoder(_EscalationHead)


class Staged:
    """The visit records staged in ``out``; the reviews that stand; what was read and
    skipped."""

    def __init__(self, out: BinaryIO, first: date, last: date) -> None:
        self._out = out
        self._first, self._last = first, last
        self.reviews: dict[str, tuple[int, bytes]] = {}
        self.read = 0
        self.rejected = 0

    def take_visit(self, key: bytes | None, value: bytes | None) -> None:
        self.read += 1
        if value is None:  # a tombstone: the visit was erased from the topic
            if key is not None:
                self._gone(key.decode("utf-8", "replace"))
            return
        try:
            head = _visit_head.decode(value)
        except msgspec.DecodeError:
            self.rejected += 1
            return
        if not self._first <= head.scheduled_start.astimezone(UTC).date() <= self._last:
            self._gone(head.visit_id)
            return
        # JSON strings hold no raw line breaks: any in the record are whitespace.
        doc = value.replace(b"\n", b" ").replace(b"\r", b" ")
        self._out.write(b'{"seq":%d,"doc":%s}\n' % (self.read, doc))

    def _gone(self, visit_id: str) -> None:
        self._out.write(orjson.dumps({"seq": self.read, "gone": visit_id}) + b"\n")

    def take_escalation(self, key: bytes | None, value: bytes | None) -> None:
        self.read += 1
        if value is None:
            return
        try:
            head = _escalation_head.decode(value)
        except msgspec.DecodeError:
            self.rejected += 1
            return
        if head.kind != SAFEGUARDING_KIND:
            return
        held = self.reviews.get(head.escalation_id)
        # The highest revision is the review as it stands; a revision written again
        # (a worker's retry) replaces its earlier copy.
        if held is None or head.revision >= held[0]:
            self.reviews[head.escalation_id] = (head.revision, value)


def from_files(staged: Staged, visits: Path, escalations: Path | None) -> None:
    for raw in _lines(visits):
        staged.take_visit(None, raw)
    if escalations is not None:
        for raw in _lines(escalations):
            staged.take_escalation(None, raw)


def _lines(path: Path) -> Iterable[bytes]:
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                yield line.strip()


def topic_visits(settings: Settings) -> str:
    # The setting is new (stream/settings.py); its default until every Settings carries it.
    return getattr(settings, "topic_visits", "ecm.visits")


def from_kafka(staged: Staged, settings: Settings) -> None:
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(**connection(settings), group_id=None,
                                 enable_auto_commit=False, auto_offset_reset="earliest",
                                 client_id=f"{settings.app_id}-report")
    except KafkaError as exc:
        raise ReportError(f"cannot reach {settings.broker}: {exc}") from exc
    try:
        _read(consumer, staged, settings)
    except KafkaError as exc:
        raise ReportError(f"reading from {settings.broker} failed: {exc}") from exc
    finally:
        consumer.close()


def _read(consumer: KafkaConsumer, staged: Staged, settings: Settings) -> None:
    """Every partition of both topics, from its beginning to its end at the start."""
    from kafka import TopicPartition

    visits, escalations = topic_visits(settings), settings.topic_escalations
    take = {visits: staged.take_visit, escalations: staged.take_escalation}
    parts = []
    for topic in (visits, escalations):
        found = consumer.partitions_for_topic(topic)
        if not found and topic == visits:
            raise ReportError(f"no topic {topic} on {settings.broker}: is the broker the "
                              "workers write to, and do they write visit records?")
        parts += [TopicPartition(topic, p) for p in sorted(found)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    ends = consumer.end_offsets(parts)
    pending = {tp for tp in parts if consumer.position(tp) < ends[tp]}
    consumer.pause(*(set(parts) - pending))
    fetched: set[TopicPartition] = set()
    heard = time.monotonic()
    while pending:
        batch = consumer.poll(timeout_ms=500, max_records=10_000)
        for tp, messages in batch.items():
            if tp not in fetched:
                fetched.add(tp)
                ends[tp] = max(ends[tp], consumer.highwater(tp) or 0)
            for m in messages:
                if m.offset < ends[tp]:
                    take[tp.topic](m.key, m.value)
        done = {tp for tp in pending if consumer.position(tp) >= ends[tp]}
        consumer.pause(*done)
        pending -= done
        if batch or done:
            heard = time.monotonic()
        elif time.monotonic() - heard > STALL_S:
            raise ReportError(f"{settings.broker} returned nothing for {STALL_S:.0f} s "
                              f"with {len(pending)} partitions unread to their end")
