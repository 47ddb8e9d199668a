"""Publishing what the partitions decided, in the order that makes a crash harmless.

Everything published for one batch or sweep goes out in this order: every escalation and
dead letter, acknowledged by the broker; then every partition's state delta (and its
checkpoint slice, if one is under way), acknowledged; the input offsets are committed by
Faust only after the batch returns. A crash before the deltas are acknowledged replays the
batch: the escalations it published are in the book the rebuild reads back from
``ecm.escalations``, so none is opened twice. A crash before the escalations are
acknowledged replays it with nothing written. Partitions are published together, so a batch
waits for two round trips to the broker, not two per partition.

The worker writes through aiokafka's producer, not Faust's topics: a send through a Faust
topic cost several times as much of the worker's time, and a batch of check-ins can raise
thousands of escalations.

A broker out of reach never stops the worker: a send that fails is sent again, in order,
after a pause that doubles up to ``_RETRY_MAX_S``, until the broker acknowledges it. The
batch (or the sweep) waits meanwhile, its escalations held, none lost and none doubled; the
worker reports itself not ready (:attr:`Publisher.reachable`) until a send succeeds again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Protocol

import msgspec
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream.clock import Clock
from stream.contract import Rejection
from stream.contract.deadletter import deadletter_doc, deadletter_key
from stream.rules.detector import Output, PartitionDetector
from stream.rules.runfacts import destinations, fact_messages
from stream.security import connection
from stream.settings import Settings
from stream.state.changelog import encode_delta
from stream.state.store import PartitionStore
from stream.worker.deadletters import Sent
from stream.worker.metrics import Metrics

log = logging.getLogger(__name__)

# An escalation record's JSON: msgspec writes the struct's fields in one call.
_encode = msgspec.json.Encoder().encode

# Visits a publish writes for checkpoints under way, over all partitions.
CHECKPOINT_SLICE = 1000
# Pauses between attempts to send what the broker refused or never acknowledged.
_RETRY_FIRST_S = 0.1
_RETRY_MAX_S = 5.0
# How long closing may wait for the producers to flush: a worker that must exit does so
# promptly even with the broker out of reach (what was not acknowledged is replayed).
_CLOSE_TIMEOUT_S = 3.0


# One record to send: (compression, topic, key, value, partition).
_Send = tuple[str, str, bytes | None, bytes, int | None]
# A producer batch holds at most this many bytes of records (aiokafka's default is 16 KiB:
# twenty escalations).
_BATCH_BYTES = 1 << 20


class Acked(NamedTuple):
    """Where the broker put a record."""

    offset: int


async def _send_some(producer: Producer, sends: list[_Send], indices: list[int], topic: str,
                     partition: int | None) -> tuple[int, Awaitable[Any]]:
    """Hand the producer the first records of ``indices`` (one partition's, in order) in
    one batch, as many as fit: how many, and the future of their acknowledgement (its
    offset the first record's). A record too large for a batch goes alone, as does any
    record without a partition (the producer's partitioner chooses)."""
    batch = producer.create_batch() if partition is not None else None
    n = 0
    if batch is not None:
        for i in indices:
            _, _, key, value, _ = sends[i]
            if batch.append(key=key, value=value, timestamp=None) is None:
                break
            n += 1
    if n:
        return n, await producer.send_batch(batch, topic, partition=partition)
    _, _, key, value, _ = sends[indices[0]]
    return 1, await producer.send(topic, value=value, key=key, partition=partition)


class Producer(Protocol):
    """What the publisher needs of a producer: aiokafka's ``create_batch`` and
    ``send_batch`` (a future of the batch's metadata once the broker acknowledges it),
    ``send`` for a record alone, and ``stop``."""

    def create_batch(self) -> Any: ...

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Awaitable[Any]: ...

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None) -> Awaitable[Any]: ...

    async def stop(self) -> None: ...


# Starts a producer that writes with the given compression ("none": uncompressed).
ProducerFactory = Callable[[str], Awaitable[Producer]]


class Publisher:
    def __init__(self, settings: Settings, clock: Clock, metrics: Metrics,
                 start_producer: ProducerFactory | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self._start = start_producer or self._start_aiokafka
        # The worker's producers, by compression, started on first use. ecm.escalations and
        # ecm.deadletter are written uncompressed (their consumers need no codec),
        # ecm.state compressed (Settings.state_compression).
        self._producers: dict[str, asyncio.Future[Producer]] = {}
        # False from a send the broker failed until one succeeds (readiness, the gauge).
        self.reachable = True
        # Dead letters sent, or read back after an assignment (stream/worker/deadletters.py):
        # a replay's rejection is not sent again. Dead letters wait for the read-back.
        self.sent = Sent()
        self._reading_back: asyncio.Future[set[bytes]] | None = None

    async def publish(self, results: list[tuple[PartitionDetector, Output]],
                      stores: dict[int, PartitionStore]) -> None:
        """Publish what the partitions decided: every escalation and dead letter,
        acknowledged, then every partition's state delta, acknowledged."""
        topic = self.settings.topic_escalations
        visits = self.settings.topic_visits
        sends: list[_Send] = []
        spans = []
        if any(out.rejections for _, out in results):
            await self._read_back()
        for detector, out in results:
            p = detector.partition
            spans.append((detector, out, len(sends), len(out.escalations)))
            sends += [("none", topic, r.escalation_id.encode(), _encode(r), p)
                      for r in out.escalations]
            sends += self._deadletter_sends(out.rejections, "detector", lambda r, p=p: p)
            if out.visits:  # visit records, in the partition's own number as its escalations
                sends += [("none", visits, r.visit_id.encode(), _encode(r), p)
                          for r in out.visits]
        facts = [f for _, out in results for f in out.runs]
        if facts:  # what the worker runs need, to their run partitions (worker runs)
            n = self.settings.partitions
            by_run: dict[int, list[Any]] = {}
            for f in facts:
                for q in destinations(f, n):
                    by_run.setdefault(q, []).append(f)
            sends += [("none", self.settings.topic_runs, None, value, q)
                      for q, value in fact_messages(by_run)]
        sent = await self.send_all(sends)
        state_sends: list[_Send] = []
        written: list[tuple[PartitionStore | None, dict[str, Any], PartitionDetector | None]] = []
        budget = CHECKPOINT_SLICE
        compression = self.settings.state_compression
        limit = self.settings.max_message_bytes
        for detector, out, first, n in spans:
            store = stores.get(detector.partition)
            if n:
                last = max(m.offset for m in sent[first:first + n])
                detector.checkpointer.published(last)
                if store is not None:
                    store.apply_escalations(out.escalations, last)
            docs = [(detector.take_delta(), False)]
            checkpoint = detector.take_checkpoint(budget)
            if checkpoint is not None:
                budget -= len(checkpoint["visits"])
                docs.append((checkpoint, True))
            for delta, slice_ in docs:
                if delta is None:
                    continue
                for k, (doc, value) in enumerate(encode_delta(delta, limit)):
                    detector.checkpointer.wrote(len(value))
                    state_sends.append((compression, self.settings.topic_state, None, value,
                                        detector.partition))
                    written.append((store, doc, detector if slice_ and k == 0 else None))
            self.count(out)
        metas = await self.send_all(state_sends)
        for (store, doc, slice_of), meta in zip(written, metas, strict=True):
            if store is not None:
                store.apply_delta(doc, meta.offset)
            if slice_of is not None and slice_of.checkpointer.slice_written(meta.offset):
                self.metrics.checkpoints.inc()

    async def deadletters(self, rejections: list[Rejection], stage: str) -> None:
        """Send the rejections of a stage outside the partitions' detectors (the router's:
        each to the partition of its input partition's number) to ``ecm.deadletter``,
        acknowledged, and count them."""
        if not rejections:
            return
        await self._read_back()
        n = self.settings.partitions
        await self.send_all(self._deadletter_sends(rejections, stage,
                                                   lambda r: r.source.partition % n))

    def read_back(self, keys: asyncio.Future[set[bytes]]) -> None:
        """Dead letters wait for these keys, read back after an assignment."""
        self._reading_back = keys

    async def _read_back(self) -> None:
        pending = self._reading_back
        if pending is None:
            return
        try:
            self.sent.add(await asyncio.shield(pending))
        except Exception as exc:  # a replay's dead letters may repeat; never stop for it
            log.warning("dead letters written before the assignment could not be read back "
                        "(%s); a replay may write some again", type(exc).__name__)
        if self._reading_back is pending:
            self._reading_back = None

    def _deadletter_sends(self, rejections: list[Rejection], stage: str,
                          partition: Callable[[Rejection], int]) -> list[_Send]:
        """The dead letters to send, each to its stage's partition; a rejection already
        dead-lettered (a replay's) is counted as replayed and not sent again."""
        now = self.clock.now()
        topic = self.settings.topic_deadletter
        sends: list[_Send] = []
        sent = self.sent
        for r in rejections:
            key = deadletter_key(r)
            if key in sent:
                self.metrics.deadletters_replayed.inc()
                continue
            self.metrics.deadletters.labels(r.reason, stage).inc()
            if r.reason == "duplicate_event":
                self.metrics.events_duplicate.inc()
            sends.append(("none", topic, key, orjson.dumps(deadletter_doc(r, now, stage)),
                          partition(r)))
        sent.add(s[2] for s in sends)  # type: ignore[misc]
        if sends:
            log.info("dead-lettered %d records at %s", len(sends), stage)
        return sends

    async def send_all(self, sends: list[_Send]) -> list[Acked]:
        """Send each ``(compression, topic, key, value, partition)`` and wait until the
        broker has acknowledged every one: their offsets, in order. What fails is sent
        again, in order, after a pause, for as long as it takes.

        A partition's records go to the producer as record batches, as many to a batch as
        fit (``_BATCH_BYTES``), not one call each: a storm raises thousands of escalations
        in one batch of check-ins."""
        done: list[Acked | None] = [None] * len(sends)
        todo = list(range(len(sends)))
        pause = _RETRY_FIRST_S
        while True:
            groups: dict[tuple[str, str, int | None], list[int]] = {}
            for i in todo:
                compression, topic, _, _, partition = sends[i]
                groups.setdefault((compression, topic, partition), []).append(i)
            futures: list[tuple[list[int], Any]] = []
            failed: list[int] = []
            error: BaseException | None = None
            for (compression, topic, partition), indices in groups.items():
                k = 0
                try:
                    producer = await self.producer(compression)
                    while k < len(indices):
                        n, future = await _send_some(producer, sends, indices[k:], topic,
                                                     partition)
                        futures.append((indices[k:k + n], future))
                        k += n
                except KafkaError as exc:
                    error = exc
                    failed += indices[k:]  # not sent: these, in order
            for indices, future in futures:
                try:
                    base = (await future).offset
                except KafkaError as exc:
                    error = exc
                    failed += indices
                    continue
                for j, i in enumerate(indices):
                    done[i] = Acked(base + j)
            if error is None:
                if not self.reachable:
                    log.warning("the broker acknowledges writes again")
                    self.reachable = True
                return done  # type: ignore[return-value]
            if self.reachable:
                log.error("the broker refused or did not acknowledge %d records (%s); sending "
                          "them again until it does", len(failed), type(error).__name__)
                self.reachable = False
            self.metrics.publish_retries.inc()
            todo = sorted(failed)
            await asyncio.sleep(pause)
            pause = min(2 * pause, _RETRY_MAX_S)

    def count(self, out: Output) -> None:
        m = self.metrics
        for kind, n in out.accepted.items():
            if n:
                m.records_accepted.labels(kind).inc(n)
                m.accepted[kind] += n
        if out.replayed:
            m.events_replayed.inc(out.replayed)
        if out.kernel_s:
            m.kernel_seconds.observe(out.kernel_s)
        # Counted once per label set, not once per escalation: a storm raises thousands.
        raised: Counter[tuple[str, str]] = Counter()
        resolved: Counter[tuple[str, str]] = Counter()
        for r in out.escalations:
            if r.revision == 1:
                raised[(r.kind, r.priority)] += 1
            elif r.status == "resolved":
                resolved[(r.kind, r.priority)] += 1
        if out.visits:
            settled: Counter[tuple[str, str]] = Counter(
                (r.outcome, r.classification.suggested_classification or "none")
                for r in out.visits)
            for labels, n in settled.items():
                m.visit_records.labels(*labels).inc(n)
        for labels, n in raised.items():
            m.escalations_raised.labels(*labels).inc(n)
        for labels, n in resolved.items():
            m.escalations_resolved.labels(*labels).inc(n)
        for stage, priority, seconds in out.case_timings:
            m.case_stage_seconds.labels(stage, priority).observe(seconds)
        for labels, n in Counter(out.case_breaches).items():
            m.case_breaches.labels(*labels).inc(n)
        for histogram, samples in ((m.detection_latency, out.latencies),
                                   (m.time_to_resolution, out.resolutions)):
            by_kind: dict[str, list[float]] = {}
            for kind, seconds in samples:
                by_kind.setdefault(kind, []).append(seconds)
            for kind, values in by_kind.items():
                child = histogram.labels(kind)
                for v in values:
                    child.observe(v if v > 0.0 else 0.0)
        if out.escalations:
            log.debug("published %d escalations (%d opened)", len(out.escalations),
                      sum(raised.values()))

    # ---- producers -------------------------------------------------------------------------

    async def producer(self, compression: str) -> Producer:
        """The producer that writes with ``compression`` ("none": uncompressed)."""
        started = self._producers.get(compression)
        if started is None:
            started = self._producers[compression] = asyncio.ensure_future(
                self._start(compression))
        if started.done():
            return started.result()
        return await asyncio.shield(started)

    async def _start_aiokafka(self, compression: str) -> Producer:
        s = self.settings
        producer = AIOKafkaProducer(
            **connection(s), acks="all",
            compression_type=None if compression == "none" else compression,
            max_batch_size=_BATCH_BYTES,
            max_request_size=max(_BATCH_BYTES, s.max_message_bytes) + (64 << 10))
        await producer.start()
        return producer  # type: ignore[return-value]

    async def close(self) -> None:
        """Stop the producers, waiting at most ``_CLOSE_TIMEOUT_S`` for each to flush."""
        producers, self._producers = self._producers, {}
        for started in producers.values():
            if started.done() and not started.cancelled() and started.exception() is None:
                try:
                    await asyncio.wait_for(started.result().stop(), _CLOSE_TIMEOUT_S)
                except (TimeoutError, KafkaError):
                    log.warning("a producer did not flush within %.0f s; what it held is "
                                "replayed from the input offsets", _CLOSE_TIMEOUT_S)
            else:
                started.cancel()
