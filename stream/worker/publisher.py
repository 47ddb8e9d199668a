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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
import orjson
from aiokafka import AIOKafkaProducer

from stream.clock import Clock
from stream.contract import Rejection
from stream.contract.deadletter import deadletter_doc, deadletter_key
from stream.rules.detector import Output, PartitionDetector
from stream.settings import Settings
from stream.state.changelog import encode_delta
from stream.state.store import PartitionStore
from stream.timeutil import parse_instant
from stream.worker.metrics import Metrics

log = logging.getLogger(__name__)

# An escalation record's JSON: msgspec writes the struct's fields in one call.
_encode = msgspec.json.Encoder().encode

# Visits a publish writes for checkpoints under way, over all partitions.
CHECKPOINT_SLICE = 1000


class Producer(Protocol):
    """What the publisher needs of a producer: aiokafka's ``send`` (a future of the
    record's metadata once the broker acknowledges it) and ``stop``."""

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

    async def publish(self, results: list[tuple[PartitionDetector, Output]],
                      stores: dict[int, PartitionStore]) -> None:
        """Publish what the partitions decided: every escalation and dead letter,
        acknowledged, then every partition's state delta, acknowledged."""
        pending = []
        futures = []
        plain = await self.producer("none")
        topic = self.settings.topic_escalations
        for detector, out in results:
            p = detector.partition
            sends = [await plain.send(topic, key=r.escalation_id.encode(),
                                      value=_encode(r), partition=p)
                     for r in out.escalations]
            pending.append((detector, out, len(futures), len(sends)))
            futures += sends
            futures += await self.deadletters(out.rejections, "detector")
        sent = await asyncio.gather(*futures)
        state_sends = []
        budget = CHECKPOINT_SLICE
        state = await self.producer(self.settings.state_compression)
        limit = self.settings.max_message_bytes
        for detector, out, first, n in pending:
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
                    state_sends.append((store, doc, detector if slice_ and k == 0 else None,
                                        await state.send(self.settings.topic_state, value=value,
                                                         partition=detector.partition)))
            self.count(out)
        metas = await asyncio.gather(*(f for _, _, _, f in state_sends))
        for (store, doc, slice_of, _), meta in zip(state_sends, metas, strict=True):
            if store is not None:
                store.apply_delta(doc, meta.offset)
            if slice_of is not None and slice_of.checkpointer.slice_written(meta.offset):
                self.metrics.checkpoints.inc()

    async def deadletters(self, rejections: list[Rejection], stage: str) -> list[Any]:
        """Send the rejections to ``ecm.deadletter`` and count them; the futures of their
        acknowledgements."""
        now = self.clock.now()
        futures = []
        if rejections:
            plain = await self.producer("none")
            for r in rejections:
                futures.append(await plain.send(
                    self.settings.topic_deadletter, key=deadletter_key(r),
                    value=orjson.dumps(deadletter_doc(r, now, stage))))
        for r in rejections:
            self.metrics.deadletters.labels(r.reason, stage).inc()
            if r.reason == "duplicate_event":
                self.metrics.events_duplicate.inc()
        if rejections:
            log.info("dead-lettered %d records at %s", len(rejections), stage)
        return futures

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
        now = self.clock.now()  # deadlines are on the worker clock (simulated in a replay)
        for r in out.escalations:
            log.info("escalation %s %s %s", r.status, r.kind, r.priority)
            if r.status == "open":
                m.escalations_raised.labels(r.kind, r.priority).inc()
                deadline = parse_instant(r.deadline)
                if deadline is not None:
                    m.detection_latency.labels(r.kind).observe(max(0.0, now - deadline))
            else:
                m.escalations_resolved.labels(r.kind, r.priority).inc()
                opened = parse_instant(r.detected_at)
                closed = parse_instant(r.resolved_at)
                if opened is not None and closed is not None:
                    m.time_to_resolution.labels(r.kind).observe(max(0.0, closed - opened))

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
            bootstrap_servers=s.bootstrap_servers, acks="all",
            compression_type=None if compression == "none" else compression,
            max_request_size=max(1 << 20, s.max_message_bytes + (64 << 10)))
        await producer.start()
        return producer  # type: ignore[return-value]

    async def close(self) -> None:
        producers, self._producers = self._producers, {}
        for started in producers.values():
            if started.done() and not started.cancelled() and started.exception() is None:
                await started.result().stop()
            else:
                started.cancel()
