"""A worker's partitions: which it owns, loading them, handing them their batches, sweeping
them, and the consumer lag.

The stages in :mod:`stream.worker.app` only move bytes and batches; the decisions live in
:mod:`stream.worker.router` and :mod:`stream.rules.detector`, and publishing them in
:mod:`stream.worker.publisher`. Everything one partition decides is published under one
lock, so a rebalance waits for what is in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP, Message

from stream.clock import Clock
from stream.contract import Codec, Rejection, Source
from stream.contract.bounds import Bounds
from stream.rules.detector import PartitionDetector
from stream.security import connection
from stream.settings import Settings
from stream.state.store import PartitionStore, Stores
from stream.worker.catchup import CatchUp, Ends, committed
from stream.worker.deadletters import written_since
from stream.worker.heap import Heap
from stream.worker.metrics import Metrics
from stream.worker.publisher import Publisher
from stream.worker.recovery import load_partition
from stream.worker.router import decode_work, route
from stream.worker.runs import RunPartitions
from stream.worker.watermark import ReadMarks, mark_message

log = logging.getLogger(__name__)

# A batch that applies this many roster records leaves long-lived state behind: the heap is
# settled once it ends (stream/worker/heap.py).
_SETTLE_AFTER_ROSTER = 1000
# Longest a reachability probe may take before the broker counts as out of reach.
_PROBE_TIMEOUT_S = 2.0
# Timers a partition's sweep takes at once: about 0.1 s of work in a storm.
_SWEEP_SLICE = 2000
# Longest the dead letters written before an assignment may take to read back.
_READ_BACK_TIMEOUT_S = 30.0
# Records handed to the detectors at once on the direct path: about 0.15 s of work, and
# two round trips to the broker for its publish.
_DIRECT_SLICE = 20000


class Runtime:
    """A worker's partitions, their detectors and the publishing of their results."""

    def __init__(self, app: faust.App, settings: Settings, clock: Clock,
                 publisher: Publisher | None = None, heap: Heap | None = None) -> None:
        self.app = app
        self.settings = settings
        self.clock = clock
        self.codec = Codec(Bounds.from_settings(settings))  # the router's and every partition's
        self.heap = heap or Heap()
        self._stores = Stores(settings)
        self.detectors: dict[int, PartitionDetector] = {}
        self.stores: dict[int, PartitionStore] = {}
        self.loading: dict[int, asyncio.Task[PartitionDetector]] = {}
        # Per input partition: whether its last message's records mostly stayed on it (route).
        self._keyed: dict[tuple[str, int], bool] = {}
        self.lock = asyncio.Lock()
        self.catchup = CatchUp()
        self.sweep_open = False
        self._gate: asyncio.Task[None] | None = None
        # The consumer generation in which this worker last held its partitions.
        self._held_generation: int | None = None
        raw = {"key_serializer": "raw", "value_serializer": "raw"}
        self.inputs = app.topic(*settings.input_topics, **raw)
        self.work = app.topic(settings.topic_work, partitions=settings.partitions, **raw)
        self.runs_topic = (app.topic(settings.topic_runs, partitions=settings.partitions, **raw)
                           if settings.runs else None)
        self.assignment: set[tuple[str, int]] = set()
        self.end_offsets: dict[tuple[str, int], int] = {}
        self.start_offsets: dict[tuple[str, int], int] = {}
        self._offsets_consumer: AIOKafkaConsumer | None = None
        self._stopping: set[asyncio.Future[None]] = set()  # consumers that failed to start
        self.metrics = Metrics()
        # What the worker writes (forwarded records included) goes through the publisher's
        # own producers.
        self.publisher = publisher or Publisher(settings, clock, self.metrics)
        # How far this worker has routed its input partitions (stream/worker/watermark.py).
        self.marks = ReadMarks()
        self._ends = Ends()
        s = settings
        # Every input partition a work partition's deadlines wait for.
        self.all_inputs = [(t, p) for t in s.input_topics for p in range(s.partitions)]
        # The partitions whose deadlines are swept without waiting for input now (_forced).
        self._forcing: set[int] = set()
        self.probe_ok = True  # the last reachability probe answered (probe())
        self._reachable = True  # as last seen by _follow_reachability
        self.metrics.broker_reachable.set_function(lambda: float(self.broker_reachable))
        self._rostered = 0  # roster records applied in the batch under way
        self.metrics.watch_state(lambda: list(self.detectors.values()), self.lag)
        # The worker runs' partitions this worker owns (stream/worker/runs.py).
        self.runs = (RunPartitions(settings, clock, self.publisher, self.metrics)
                     if settings.runs else None)

    # ---- partition ownership -------------------------------------------------------------

    def _work_partitions(self, tps: set[TP]) -> set[int]:
        return {tp.partition for tp in tps if tp.topic == self.settings.topic_work}

    async def on_assigned(self, assigned: set[TP]) -> None:
        self.metrics.rebalances.inc()
        generation = self.app.consumer_generation_id
        if self._held_generation is None or generation != self._held_generation + 1:
            # A generation passed without this worker (it was thought dead): another may
            # have owned its partitions meanwhile, so what it holds is stale.
            for p in list(self.detectors) + list(self.loading):
                self._drop(p)
            if self.runs is not None:
                self.runs.assigned(set())
        self._held_generation = generation
        # Read again from the committed offsets: positions count from there (_open_gate).
        self.catchup.processed.clear()
        s = self.settings
        self.assignment = {(tp.topic, tp.partition) for tp in assigned
                           if tp.topic in (*s.input_topics, s.topic_work)}
        self.end_offsets = {tp: n for tp, n in self.end_offsets.items() if tp in self.assignment}
        self.marks.keep(self.assignment)
        self.publisher.read_back(asyncio.ensure_future(asyncio.wait_for(
            written_since(s, self.assignment), _READ_BACK_TIMEOUT_S)))
        self._hold_sweep(reopen_for=assigned)
        owned = self._work_partitions(assigned)
        if self.runs is not None:
            self.runs.assigned({tp.partition for tp in assigned if tp.topic == s.topic_runs})
        for p in list(self.detectors) + list(self.loading):
            if p not in owned:
                self._drop(p)
        for p in sorted(owned):
            if p not in self.detectors and p not in self.loading:
                self.loading[p] = asyncio.ensure_future(self._load(p))

    async def on_revoked(self, revoked: set[TP]) -> None:
        """Stop sweeping, and finish whatever is being published before the partitions
        move on. The detectors are kept: Kafka's rebalance revokes every partition and
        assigns them again, mostly to the same workers, and a partition given back in the
        next generation is as this worker left it (on_assigned drops the others, and all of
        them if a generation passed without this worker). Rebuilding every partition at
        every rebalance would make each one cost a full replay."""
        self.sweep_open = False
        async with self.lock:
            pass

    async def _open_gate(self, assigned: set[TP]) -> None:
        """Learn where the group's committed offsets start the assigned input partitions
        (their read marks count from there), and open the sweep once the partitions are
        loaded. No backlog is waited for here: each deadline waits for its input's read
        marks (stream/rules/inputs.py)."""
        s = self.settings
        inputs = [(tp.topic, tp.partition) for tp in assigned if tp.topic in s.input_topics]
        while True:
            try:
                start = await asyncio.wait_for(committed(s, inputs), 2 * _PROBE_TIMEOUT_S)
                break
            except Exception as exc:  # the broker out of reach: asked again
                log.warning("committed offsets unavailable (%s)", type(exc).__name__)
                await asyncio.sleep(1.0)
        self.start_offsets.update(start)
        while self.loading:
            await asyncio.sleep(0.05)
        self.sweep_open = True
        log.info("sweeping %d partitions", len(self.detectors))

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
            store = self.stores[p] = self._stores.open(p)
        detector = await load_partition(
            self.settings, p, self.clock, store, self.codec,
            lambda where: self.metrics.records_skipped.labels(where).inc())
        detector.await_inputs(self.all_inputs)
        if self.loading.get(p) is asyncio.current_task():
            self.detectors[p] = detector
            del self.loading[p]
            self.heap.settle()
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
        with self.heap.paused():
            await self._route_batch(messages)
            # Here, not inside: the batch's decoded records are garbage by now, and the
            # settling collection walks only what the batch left alive.
            self._settle()

    async def _route_batch(self, messages: list[Message]) -> None:
        sourced = [(Source(m.topic, m.partition, m.offset), m.value, float(m.timestamp or 0.0))
                   for m in messages]
        owned = self.detectors.keys() | self.loading.keys()
        routed = route(sourced, self.settings.topic_roster, self.settings.partitions,
                       self.settings.max_message_bytes, owned, self._keyed, self.codec,
                       self.settings.topic_actions)
        for kind, n in routed.received.items():
            self.metrics.records_received.labels(kind).inc(n)
            self.metrics.received[kind] += n
        self.metrics.batch_records.labels("router").observe(routed.records)
        local = routed.local
        # Forwarded and dead-lettered while the records that stay are applied; the batch
        # is acknowledged once both are.
        forwarded = [("none", self.settings.topic_work, None, value, p)
                     for p, value in routed.encoded()]
        sent = asyncio.ensure_future(asyncio.gather(
            self.publisher.send_all(forwarded),
            self.publisher.deadletters(routed.rejections, "router")))
        direct = sum(len(records) for records in local.values())
        # In slices, so that a large batch (a backlog of roster messages is hundreds of
        # thousands of records) lets the event loop run between them; a partition's slices
        # are applied in order.
        part: dict[int, list[Any]] = {}
        stamps: dict[int, list[float]] = {}
        size = 0
        for p, records in local.items():
            at = routed.local_stamps[p]
            for k in range(0, len(records), _DIRECT_SLICE):
                if size >= _DIRECT_SLICE or p in part:
                    await self._detect(part, stamps)
                    part, stamps, size = {}, {}, 0
                part[p] = records[k:k + _DIRECT_SLICE]
                stamps[p] = at[k:k + _DIRECT_SLICE]
                size += len(part[p])
        if part:
            await self._detect(part, stamps)
        self.metrics.work_records.labels("direct").inc(direct)
        self.metrics.work_records.labels("forwarded").inc(routed.records - direct)
        await sent
        self._seen(messages)

    async def runs_batch(self, messages: list[Message]) -> None:
        """Apply a batch of ``ecm.runs`` messages to their run partitions."""
        if self.runs is not None:
            await self.runs.batch(messages)

    async def detect_batch(self, messages: list[Message]) -> None:
        """Apply a batch of ``ecm.work`` messages to their partitions' detectors."""
        with self.heap.paused():
            await self._detect_batch(messages)
            self._settle()

    async def _detect_batch(self, messages: list[Message]) -> None:
        by_partition: dict[int, list[Any]] = defaultdict(list)
        stamps: dict[int, list[float]] = defaultdict(list)
        marks: dict[int, list[tuple[str, int, float]]] = defaultdict(list)
        broken: list[Rejection] = []
        for m in messages:
            try:
                records, timestamps, read = decode_work(m.value)
                by_partition[m.partition].extend(records)
                stamps[m.partition].extend(timestamps)
                marks[m.partition].extend(read)
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                broken.append(Rejection("invalid_work_message", repr(exc)[:200], m.value or b"",
                                        Source(m.topic, m.partition, m.offset)))
        if broken:
            await self.publisher.deadletters(broken, "detector")
        await self._detect(by_partition, stamps, marks)
        self._seen(messages)

    async def _detect(self, by_partition: dict[int, list[Any]], stamps: dict[int, list[float]],
                      marks: dict[int, list[tuple[str, int, float]]] | None = None) -> None:
        """Apply each partition's records to its detector and publish the results; then
        the read marks that followed them."""
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
                if not records:
                    continue
                self.metrics.batch_records.labels("detector").observe(len(records))
                out = detector.process(records, stamps[p])
                rostered += out.accepted["roster"]
                results.append((detector, out))
            if results:
                await self.publisher.publish(results, self.stores)
            for p, read in (marks or {}).items():
                d = owned.get(p)
                if read and d is not None and self.detectors.get(p) is d:
                    d.read(read)
        now = time.time()
        # One sample per input message (its records share its timestamp).
        for p in owned:
            for t in set(stamps[p]):
                if t > 0:
                    self.metrics.processing_latency.observe(max(0.0, now - t))
        self._rostered += rostered
        self.heap.changed()

    def _settle(self) -> None:
        """After a batch: settle the state a roster load left behind. Once per batch, not
        per slice: until the batch ends its records are held, decoded, and a collection per
        slice walked all of them again."""
        if self._rostered >= _SETTLE_AFTER_ROSTER:
            self.heap.settle()
        self._rostered = 0

    def _seen(self, messages: list[Message]) -> None:
        """Note the messages processed. Only those fetched in the current generation: a
        batch that finishes after a rebalance may have dropped records of partitions no
        longer held, and its partitions are read again from the committed offsets (a read
        mark must never cover a record that was not applied or forwarded)."""
        generation = self.app.consumer_generation_id
        for m in messages:
            if m.generation_id == generation:
                self.catchup.seen((m.topic, m.partition), m.offset)

    async def sweep(self) -> None:
        self.heap.trim_if_due()
        self._follow_reachability()
        if not self.sweep_open:
            return
        started = time.perf_counter()
        pending = list(self.detectors.values())
        while pending:
            # In slices of at most _SWEEP_SLICE timers a partition, published one by one,
            # the lock let go between them: a storm of deadlines falling due at once (an
            # hour's after an outage, a region's at 08:15) must not hold the check-ins.
            async with self.lock:
                if not self.sweep_open:
                    break  # revoked meanwhile: the next owner sweeps the rest
                swept = []
                forced: dict[int, float | None] = {}
                for d in pending:
                    if self.detectors.get(d.partition) is d:
                        forced[d.partition] = until = self._forced(d)
                        if until is not None:
                            self.metrics.deadlines_forced.inc()
                        swept.append((d, d.sweep(until, _SWEEP_SLICE)))
                for d, _ in swept:
                    for _, _, why in d.skipped:
                        log.error("partition %d: skipped %s in the sweep", d.partition, why)
                        self.metrics.records_skipped.labels("sweep").inc()
                    d.skipped = []
                await self.publisher.publish(swept, self.stores)
                pending = [d for d, _ in swept if d.more_due(forced[d.partition])]
            if pending:
                await asyncio.sleep(0)
        self.metrics.sweep_seconds.observe(time.perf_counter() - started)
        if self.runs is not None:
            await self.runs.sweep()

    def _forced(self, d: PartitionDetector) -> float | None:
        """None: the partition's deadlines wait for its inputs' read marks. Once its oldest
        waiting deadline has waited ``ECM_CATCHUP_MAX_HOLD_S`` (wall seconds, on the worker
        clock's scale), now: a late alert beats none, and an input nobody reads (a
        partition no worker owns) must not silence a region."""
        p = d.partition
        since = d.held_since()
        now = self.clock.now()
        hold = self.settings.catchup_max_hold_s * getattr(self.clock, "speed", 1.0)
        if since is None or now - since < hold:
            self._forcing.discard(p)
            return None
        if p not in self._forcing:
            self._forcing.add(p)
            log.error("partition %d: its deadlines waited %.0f s for input that was not read; "
                      "sweeping without it", p, self.settings.catchup_max_hold_s)
        return now

    def progress(self) -> dict[str, Any]:
        """Records received by the router and applied by the detectors since start, by
        kind, and the visits tracked now (the same figures as /metrics)."""
        return {"received": self.metrics.received, "accepted": self.metrics.accepted,
                "visits_tracked": sum(len(d.visits) for d in self.detectors.values())}

    async def close(self) -> None:
        """Stop the worker's own clients (its producers and its offsets consumer)."""
        await self.publisher.close()
        if self._offsets_consumer is not None:
            await self._offsets_consumer.stop()
            self._offsets_consumer = None

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

    @property
    def ready(self) -> bool:
        """Partitions loaded, the backlog read (so deadlines are being swept), and the
        broker within reach."""
        return (self.sweep_open and not self.loading and self.broker_reachable
                and (self.runs is None or self.runs.ready))

    @property
    def broker_reachable(self) -> bool:
        return self.probe_ok and self.publisher.reachable

    async def probe(self) -> None:
        """Ask the broker where the owned input partitions end (one roster partition while
        the worker owns none), and send the read marks that moved.

        Whether it answers within ``_PROBE_TIMEOUT_S`` is whether it is reachable. While
        it is not, no mark moves, so every deadline that depends on this worker's input
        waits: the check-ins that would answer it cannot be read, and absence proves
        nothing. Once it is back, the marks move as the backlog is read."""
        s = self.settings
        inputs = [TopicPartition(t, p) for t, p in sorted(self.assignment)
                  if t in s.input_topics]
        at = self.clock.now()  # before asking: what reached Kafka by now lies below the ends
        try:
            consumer = await self._consumer()
            if inputs:
                ends = await asyncio.wait_for(self._ends.ask(consumer, inputs),
                                              _PROBE_TIMEOUT_S)
            else:
                await asyncio.wait_for(consumer.end_offsets(
                    [TopicPartition(s.topic_roster, 0)]), _PROBE_TIMEOUT_S)
                ends = {}
        except Exception as exc:  # a probe must never stop the worker
            if self.probe_ok:
                log.error("the broker is out of reach (%s); deadlines are held until it is "
                          "back and the input read", type(exc).__name__)
            self.probe_ok = False
            self._follow_reachability()
            return
        self.probe_ok = True
        self._follow_reachability()
        owned = {(tp.topic, tp.partition): n for tp, n in ends.items()}
        if not owned.keys() <= self.assignment:
            return  # revoked meanwhile
        self.end_offsets.update(owned)
        self.marks.asked(at, owned)
        await self._send_marks()

    def _positions(self) -> dict[tuple[str, int], int]:
        """The next offset of each owned input partition the router will route: every
        record below it is routed, and what it forwarded acknowledged (_seen follows
        the forwarding)."""
        out = {}
        processed = self.catchup.processed
        for tp, start in self.start_offsets.items():
            if tp in self.assignment:
                out[tp] = max(start, processed.get(tp, -1) + 1)
        return out

    async def _send_marks(self) -> None:
        """Send the read marks, if any moved, to every work partition."""
        self.marks.reached(self._positions())
        if not self.marks.moved:
            return
        value = mark_message(self.marks.take())
        topic = self.settings.topic_work
        await self.publisher.send_all([("none", topic, None, value, p)
                                       for p in range(self.settings.partitions)])

    def _follow_reachability(self) -> None:
        """Hold the sweep when the broker goes out of reach; when it is back, reopen it
        through the catch-up gate over the partitions owned."""
        reachable = self.broker_reachable
        if reachable == self._reachable:
            return
        self._reachable = reachable
        if not reachable:
            self._hold_sweep(reopen_for=None)
            return
        log.warning("the broker is within reach again: reading the backlog before sweeping")
        self._hold_sweep(reopen_for={TP(t, p) for t, p in self.assignment})

    def _hold_sweep(self, reopen_for: set[TP] | None) -> None:
        """Close the sweep, dropping the catch-up under way; when ``reopen_for`` is given,
        reopen it once the backlog of those partitions is read (:meth:`_open_gate`)."""
        self.sweep_open = False
        if self._gate is not None:
            self._gate.cancel()
            self._gate = None
        if reopen_for is not None:
            self._gate = asyncio.ensure_future(self._open_gate(reopen_for))

    async def refresh_lag(self) -> None:
        """The owned work partitions' end offsets, for the lag gauge (the probe asks for
        the input partitions')."""
        tps = [TopicPartition(t, p) for t, p in sorted(self.assignment)
               if t == self.settings.topic_work]
        if not tps:
            return
        try:
            consumer = await self._consumer()
            ends = await asyncio.wait_for(consumer.end_offsets(tps), 2 * _PROBE_TIMEOUT_S)
        except Exception as exc:  # the lag gauge must never stop the worker
            log.warning("end offsets unavailable (%s)", type(exc).__name__)
            return
        self.end_offsets.update({(tp.topic, tp.partition): n for tp, n in ends.items()})

    async def _consumer(self) -> AIOKafkaConsumer:
        """The worker's consumer outside its group, for probes and offsets."""
        if self._offsets_consumer is None:
            consumer = AIOKafkaConsumer(**connection(self.settings),
                                        group_id=None, fetch_max_wait_ms=100)
            try:
                await asyncio.wait_for(consumer.start(), _PROBE_TIMEOUT_S)
            except BaseException:
                # Not left running: a worker started while the broker is out of reach
                # would otherwise leave one behind at every probe.
                stopping = asyncio.ensure_future(consumer.stop())
                self._stopping.add(stopping)
                stopping.add_done_callback(self._stopping.discard)
                raise
            self._offsets_consumer = consumer
        return self._offsets_consumer
