"""A worker's partitions, their detectors, and the publishing of what they decide.

The agents in :mod:`stream.app` only move bytes and batches; the decisions live in
:mod:`stream.router` and :mod:`stream.detector`. Everything that is published for one
partition is published under one lock, in this order: escalations, dead letters, then the
state delta, each acknowledged by the broker before the next; the input offsets are
committed by Faust after the batch returns. See the README's "Guarantees".
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import faust
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faust.types import TP, Message

from stream.catchup import CatchUp, positions
from stream.clock import Clock
from stream.contract import Rejection, Source
from stream.detector import Output, PartitionDetector
from stream.metrics import Metrics
from stream.recovery import load_partition
from stream.router import deadletter_doc, deadletter_key, decode_work, route
from stream.settings import Settings
from stream.state import encode_delta
from stream.store import PartitionStore, open_store
from stream.timeutil import parse_instant

log = logging.getLogger(__name__)

# A batch that applies this many roster records leaves long-lived state behind: see
# settle_heap().
_SETTLE_AFTER_ROSTER = 1000
# Records handed to the detectors at once on the direct path: about 0.15 s of work, and
# two round trips to the broker for its publish (README, "Architecture").
_DIRECT_SLICE = 20000
# Visits a publish writes for checkpoints under way, over all partitions (README, "State").
_CHECKPOINT_SLICE = 1000


def settle_heap() -> None:
    """Move the objects alive now out of the garbage collector's sight.

    A worker holds millions of long-lived objects (a million visits is about ten million).
    CPython's full collections walk all of them, pausing the event loop for a second or
    more and, measured on the hot path, doubling the cost of every record. After a roster
    load or a partition restore the new objects are state that lives for a day, so they are
    frozen (``gc.freeze``). Everything not yet frozen is collected first, so that no garbage
    cycle is frozen with it (a full collection walks only what is not frozen, so it costs
    no more than a young one here), and the C allocator then hands freed pages back to the
    system where it can.
    """
    gc.collect()
    gc.freeze()
    heap_changed()
    trim_heap_if_due()


def heap_changed() -> None:
    """Note that records were applied: decoding them freed memory that can go back."""
    global _trim_pending
    _trim_pending = True


def trim_heap_if_due() -> None:
    """Hand the C heap's free pages back to the system if records were applied since the
    last time, at most once every few seconds. The sweep timer calls this, so the pages
    freed by decoding input (large messages are large buffers) and by a load's last slices
    go back within seconds. Trimming walks the heap: about 3 ms for a 650 MB heap, measured
    in process."""
    global _last_trim, _trim_pending
    now = time.monotonic()
    if _trim_pending and _malloc_trim is not None and now - _last_trim >= _TRIM_EVERY_S:
        _last_trim = now
        _trim_pending = False
        _malloc_trim(0)


def _libc_malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; other C libraries go without
    except (OSError, AttributeError):
        return None


_malloc_trim = _libc_malloc_trim()
_TRIM_EVERY_S = 5.0
_last_trim = float("-inf")
_trim_pending = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic garbage collection while a batch is applied; the batch ends with
    settle_heap() when it loaded roster records, else the collector resumes.

    A batch decodes its records up front and holds them until it ends (a backlog of roster
    messages is hundreds of thousands of records): every automatic collection during it
    walked all of them again. Nested uses (both agents' batches interleave at their awaits)
    resume it when the last one ends."""
    global _paused
    if _paused == 0:
        gc.disable()
    _paused += 1
    try:
        yield
    finally:
        _paused -= 1
        if _paused == 0:
            gc.enable()


_paused = 0


def tune_gc() -> None:
    """Collect the young generation less often: a batch allocates tens of thousands of
    short-lived objects, and each collection walks the survivors."""
    gc.set_threshold(50_000, 20)


class Runtime:
    """A worker's partitions, their detectors and the publishing of their results."""

    def __init__(self, app: faust.App, settings: Settings, clock: Clock) -> None:
        self.app = app
        self.settings = settings
        self.clock = clock
        self.detectors: dict[int, PartitionDetector] = {}
        self.stores: dict[int, PartitionStore] = {}
        self.loading: dict[int, asyncio.Task[PartitionDetector]] = {}
        # Per input partition: whether its last message's records mostly stayed on it (route).
        self._keyed: dict[tuple[str, int], bool] = {}
        self.lock = asyncio.Lock()
        self.catchup = CatchUp()
        self.sweep_open = False
        self._gate: asyncio.Task[None] | None = None
        raw = {"key_serializer": "raw", "value_serializer": "raw"}
        self.inputs = app.topic(settings.topic_roster, settings.topic_events, **raw)
        self.work = app.topic(settings.topic_work, partitions=settings.partitions, **raw)
        self.assignment: set[tuple[str, int]] = set()
        self.end_offsets: dict[tuple[str, int], int] = {}
        self.start_offsets: dict[tuple[str, int], int] = {}
        self._offsets_consumer: AIOKafkaConsumer | None = None
        # The worker's own producers, by compression, started on first use (_producer).
        # They write what the worker publishes (ecm.escalations, ecm.deadletter
        # uncompressed; ecm.state compressed, Settings.state_compression); the app's
        # producer forwards records to ecm.work.
        self._producers: dict[str, asyncio.Future[AIOKafkaProducer]] = {}
        self.metrics = Metrics()
        # The records counters of /progress (also in /metrics): plain numbers, so that a
        # caller polling often does not have every series rendered for it.
        self.received = {"roster": 0, "event": 0}
        self.accepted = {"roster": 0, "event": 0}
        self._rostered = 0  # roster records applied in the batch under way
        self.metrics.watch_state(lambda: list(self.detectors.values()), self.lag)

    # ---- partition ownership -------------------------------------------------------------

    def _work_partitions(self, tps: set[TP]) -> set[int]:
        return {tp.partition for tp in tps if tp.topic == self.settings.topic_work}

    async def on_assigned(self, assigned: set[TP]) -> None:
        self.metrics.rebalances.inc()
        s = self.settings
        self.assignment = {(tp.topic, tp.partition) for tp in assigned
                           if tp.topic in (s.topic_roster, s.topic_events, s.topic_work)}
        self.end_offsets = {tp: n for tp, n in self.end_offsets.items() if tp in self.assignment}
        self.sweep_open = False
        if self._gate is not None:
            self._gate.cancel()
        self._gate = asyncio.ensure_future(self._open_gate(assigned))
        owned = self._work_partitions(assigned)
        for p in list(self.detectors) + list(self.loading):
            if p not in owned:
                self._drop(p)
        for p in sorted(owned):
            if p not in self.detectors and p not in self.loading:
                self.loading[p] = asyncio.ensure_future(self._load(p))

    async def on_revoked(self, revoked: set[TP]) -> None:
        self.sweep_open = False
        # Finish whatever is being published before the partitions move on.
        async with self.lock:
            for p in self._work_partitions(revoked):
                self._drop(p)

    async def _open_gate(self, assigned: set[TP]) -> None:
        """Open the sweep once the backlog handed over with ``assigned`` is processed."""
        s = self.settings
        give_up = self.clock_monotonic() + s.catchup_max_hold_s
        inputs = [(tp.topic, tp.partition) for tp in assigned
                  if tp.topic in (s.topic_roster, s.topic_events)]
        work = [(tp.topic, tp.partition) for tp in assigned if tp.topic == s.topic_work]
        for phase in (inputs, work):
            end, start = await positions(s, phase)
            self.start_offsets.update(start)
            self.end_offsets.update(end)
            self.catchup.expect(end, start)
            while not self.catchup.done() and self.clock_monotonic() < give_up:
                await asyncio.sleep(0.05)
        while self.loading and self.clock_monotonic() < give_up:
            await asyncio.sleep(0.05)
        if not self.catchup.done():
            log.warning("sweep opened with %d records of backlog left", self.catchup.remaining())
        self.sweep_open = True
        log.info("caught up; sweeping %d partitions", len(self.detectors))

    @staticmethod
    def clock_monotonic() -> float:
        return asyncio.get_running_loop().time()

    def _drop(self, p: int) -> None:
        self.detectors.pop(p, None)
        task = self.loading.pop(p, None)
        if task is not None:
            task.cancel()
        store = self.stores.pop(p, None)
        if store is not None:
            store.close()

    async def _load(self, p: int) -> PartitionDetector:
        store = self.stores.get(p)
        if store is None:
            store = self.stores[p] = open_store(self.settings, p)
        detector = await load_partition(self.settings, p, self.clock, store)
        if self.loading.get(p) is asyncio.current_task():
            self.detectors[p] = detector
            del self.loading[p]
            settle_heap()
        return detector

    async def detector(self, p: int) -> PartitionDetector | None:
        if p in self.detectors:
            return self.detectors[p]
        task = self.loading.get(p)
        if task is None:
            return None
        return await asyncio.shield(task)

    # ---- the stages ------------------------------------------------------------------------

    async def route_batch(self, messages: list[Message]) -> None:
        """Route a batch of input messages (``ecm.roster``, ``ecm.events``), and apply the
        records that stay on their partition."""
        with collector_paused():
            await self._route_batch(messages)
            # Here, not inside: the batch's decoded records are garbage by now, and the
            # settling collection walks only what the batch left alive.
            self._settle()

    async def _route_batch(self, messages: list[Message]) -> None:
        sourced = [(Source(m.topic, m.partition, m.offset), m.value, float(m.timestamp or 0.0))
                   for m in messages]
        owned = self.detectors.keys() | self.loading.keys()
        routed = route(sourced, self.settings.topic_roster, self.settings.partitions,
                       self.settings.max_message_bytes, owned, self._keyed)
        for kind, n in routed.received.items():
            self.metrics.records_received.labels(kind).inc(n)
            self.received[kind] += n
        self.metrics.batch_records.labels("router").observe(routed.records)
        local = routed.local
        futures = [await self.work.send(value=value, partition=p)
                   for p, value in routed.encoded()]
        futures += await self._send_deadletters(routed.rejections, "router")
        direct = sum(len(records) for records in local.values())
        # In slices, so that a large batch (a backlog of roster messages is hundreds of
        # thousands of records) lets the event loop run between them; a partition's slices
        # are applied in order, and its messages' latency is observed with its last slice.
        part: dict[int, list[Any]] = {}
        stamps: dict[int, list[float]] = {}
        size = 0
        for p, records in local.items():
            for k in range(0, len(records), _DIRECT_SLICE):
                if size >= _DIRECT_SLICE or p in part:
                    await self._detect(part, stamps)
                    part, stamps, size = {}, {}, 0
                part[p] = records[k:k + _DIRECT_SLICE]
                last = k + _DIRECT_SLICE >= len(records)
                stamps[p] = routed.local_stamps[p] if last else []
                size += len(part[p])
        if part:
            await self._detect(part, stamps)
        self.metrics.work_records.labels("direct").inc(direct)
        self.metrics.work_records.labels("forwarded").inc(routed.records - direct)
        await asyncio.gather(*futures)
        self._seen(messages)

    async def detect_batch(self, messages: list[Message]) -> None:
        """Apply a batch of ``ecm.work`` messages to their partitions' detectors."""
        with collector_paused():
            await self._detect_batch(messages)
            self._settle()

    async def _detect_batch(self, messages: list[Message]) -> None:
        by_partition: dict[int, list[Any]] = defaultdict(list)
        stamps: dict[int, list[float]] = defaultdict(list)
        broken: list[Rejection] = []
        for m in messages:
            try:
                records, timestamps = decode_work(m.value)
                by_partition[m.partition].extend(records)
                stamps[m.partition].extend(timestamps)
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                broken.append(Rejection("invalid_work_message", repr(exc)[:200], m.value or b"",
                                        Source(m.topic, m.partition, m.offset)))
        if broken:
            await asyncio.gather(*await self._send_deadletters(broken, "detector"))
        await self._detect(by_partition, stamps)
        self._seen(messages)

    async def _detect(self, by_partition: dict[int, list[Any]],
                      stamps: dict[int, list[float]]) -> None:
        """Apply each partition's records to its detector and publish the results."""
        owned: dict[int, PartitionDetector] = {}
        for p in by_partition:
            detector = await self.detector(p)
            if detector is None:
                log.warning("work for partition %d that this worker does not own", p)
            else:
                owned[p] = detector
        rostered = 0
        async with self.lock:
            results = []
            for p, detector in owned.items():
                if self.detectors.get(p) is not detector:
                    continue  # revoked while waiting; the new owner replays it
                records = by_partition[p]
                self.metrics.batch_records.labels("detector").observe(len(records))
                out = detector.process(records)
                rostered += out.accepted["roster"]
                results.append((detector, out))
            await self._publish(results)
        now = time.time()
        # One sample per input message (its records share its timestamp).
        for p in owned:
            for t in set(stamps[p]):
                if t > 0:
                    self.metrics.processing_latency.observe(max(0.0, now - t))
        self._rostered += rostered
        heap_changed()

    def _settle(self) -> None:
        """After a batch: settle the state a roster load left behind (settle_heap). Once per
        batch, not per slice: until the batch ends its records are held, decoded, and a
        collection per slice walked all of them again."""
        if self._rostered >= _SETTLE_AFTER_ROSTER:
            settle_heap()
        self._rostered = 0

    def _seen(self, messages: list[Message]) -> None:
        for m in messages:
            self.catchup.seen((m.topic, m.partition), m.offset)

    async def sweep(self) -> None:
        trim_heap_if_due()
        if not self.sweep_open:
            return
        started = time.perf_counter()
        async with self.lock:
            await self._publish([(d, d.sweep()) for d in self.detectors.values()])
        self.metrics.sweep_seconds.observe(time.perf_counter() - started)

    async def _publish(self, results: list[tuple[PartitionDetector, Output]]) -> None:
        """Publish what the partitions decided: every escalation and dead letter, acknowledged,
        then every partition's state delta, acknowledged. Partitions are published together
        so that a batch waits for two round trips to the broker, not two per partition."""
        pending = []
        futures = []
        plain = await self._producer("none")
        topic = self.settings.topic_escalations
        for detector, out in results:
            p = detector.partition
            sends = [await plain.send(topic, key=r["escalation_id"].encode(),
                                      value=orjson.dumps(r), partition=p)
                     for r in out.escalations]
            pending.append((detector, out, len(futures), len(sends)))
            futures += sends
            futures += await self._send_deadletters(out.rejections, "detector")
        sent = await asyncio.gather(*futures)
        state_sends = []
        budget = _CHECKPOINT_SLICE
        state = await self._producer(self.settings.state_compression)
        for detector, out, first, n in pending:
            store = self.stores.get(detector.partition)
            if n:
                last = max(m.offset for m in sent[first:first + n])
                detector.escalations_next = max(detector.escalations_next, last + 1)
                if store is not None:
                    store.apply_escalations(out.escalations, last)
            docs = [(detector.take_delta(), False)]
            checkpoint = detector.take_checkpoint(budget)
            if checkpoint is not None:
                budget -= len(checkpoint["visits"])
                docs.append((checkpoint, True))
            limit = self.settings.max_message_bytes
            for delta, slice_ in docs:
                if delta is None:
                    continue
                for k, (doc, value) in enumerate(encode_delta(delta, limit)):
                    detector.wrote(len(value))
                    state_sends.append((store, doc, detector if slice_ and k == 0 else None,
                                        await state.send(self.settings.topic_state, value=value,
                                                         partition=detector.partition)))
            self._count(out)
        metas = await asyncio.gather(*(f for _, _, _, f in state_sends))
        for (store, doc, slice_of, _), meta in zip(state_sends, metas, strict=True):
            if store is not None:
                store.apply_delta(doc, meta.offset)
            if slice_of is not None:
                done = slice_of.checkpoints
                slice_of.checkpoint_written(meta.offset)
                if slice_of.checkpoints > done:
                    self.metrics.checkpoints.inc()

    def progress(self) -> dict[str, Any]:
        """Records received by the router and applied by the detectors since start, by
        kind, and the visits tracked now (the same figures as /metrics)."""
        return {"received": self.received, "accepted": self.accepted,
                "visits_tracked": sum(len(d.visits) for d in self.detectors.values())}

    def _count(self, out: Output) -> None:
        m = self.metrics
        for kind, n in out.accepted.items():
            if n:
                m.records_accepted.labels(kind).inc(n)
                self.accepted[kind] += n
        if out.replayed:
            m.events_replayed.inc(out.replayed)
        if out.kernel_s:
            m.kernel_seconds.observe(out.kernel_s)
        now = self.clock.now()  # deadlines are on the worker clock (simulated in a replay)
        for r in out.escalations:
            log.info("escalation %s %s %s", r["status"], r["kind"], r["priority"])
            if r["status"] == "open":
                m.escalations_raised.labels(r["kind"], r["priority"]).inc()
                deadline = parse_instant(r["deadline"])
                if deadline is not None:
                    m.detection_latency.labels(r["kind"]).observe(max(0.0, now - deadline))
            else:
                m.escalations_resolved.labels(r["kind"], r["priority"]).inc()
                opened = parse_instant(r["detected_at"])
                closed = parse_instant(r.get("resolved_at"))
                if opened is not None and closed is not None:
                    m.time_to_resolution.labels(r["kind"]).observe(max(0.0, closed - opened))

    async def _producer(self, compression: str) -> AIOKafkaProducer:
        """The worker's producer that writes with ``compression`` ("none": uncompressed).

        The worker writes through aiokafka's producer, not Faust's topics: a send through a
        Faust topic cost 75-120 µs of the worker's time, measured against the embedded
        broker, and the same send through aiokafka 14-17 µs, and a batch of check-ins can
        raise thousands of escalations."""
        started = self._producers.get(compression)
        if started is None:
            started = self._producers[compression] = asyncio.ensure_future(
                self._start_producer(compression))
        if started.done():
            return started.result()
        return await asyncio.shield(started)

    async def _start_producer(self, compression: str) -> AIOKafkaProducer:
        s = self.settings
        producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers, acks="all",
            compression_type=None if compression == "none" else compression,
            max_request_size=max(1 << 20, s.max_message_bytes + (64 << 10)))
        await producer.start()
        return producer

    async def close(self) -> None:
        """Stop the worker's own clients (its producers and its offsets consumer)."""
        producers, self._producers = self._producers, {}
        for started in producers.values():
            if started.done() and not started.cancelled() and started.exception() is None:
                await started.result().stop()
            else:
                started.cancel()
        if self._offsets_consumer is not None:
            await self._offsets_consumer.stop()
            self._offsets_consumer = None

    async def _send_deadletters(self, rejections: list[Any], stage: str) -> list[Any]:
        now = self.clock.now()
        futures = []
        if rejections:
            plain = await self._producer("none")
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

    # ---- consumer lag ----------------------------------------------------------------------

    def lag(self) -> dict[tuple[str, int], int]:
        """Records between this worker's position and the log end, per owned partition."""
        out = {}
        for tp in self.assignment:
            end = self.end_offsets.get(tp)
            if end is None:
                continue
            done = self.catchup.processed.get(tp)
            position = done + 1 if done is not None else self.start_offsets.get(tp, end)
            out[tp] = max(0, end - position)
        return out

    async def refresh_end_offsets(self) -> None:
        if not self.assignment:
            return
        if self._offsets_consumer is None:
            self._offsets_consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.bootstrap_servers, group_id=None)
            await self._offsets_consumer.start()
        tps = [TopicPartition(t, p) for t, p in sorted(self.assignment)]
        try:
            ends = await self._offsets_consumer.end_offsets(tps)
        except Exception as exc:  # a lag probe must never stop the worker
            log.warning("end offsets unavailable: %r", exc)
            return
        self.end_offsets.update({(tp.topic, tp.partition): n for tp, n in ends.items()})
