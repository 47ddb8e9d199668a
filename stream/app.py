"""The Faust application: agents, the sweep timer and partition ownership.

The agents only move bytes and batches; the decisions live in :mod:`stream.router` and
:mod:`stream.detector`. Everything that is published for one partition is published under
one lock, in this order: escalations, dead letters, then the state delta, each acknowledged
by the broker before the next; the input offsets are committed by Faust after the batch
returns. See the README's "Guarantees".
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

import faust
import orjson
from faust.types import TP, EventT

from stream.catchup import CatchUp, positions
from stream.clock import Clock, SystemClock
from stream.contract import Rejection, Source
from stream.detector import Output, PartitionDetector
from stream.recovery import load_partition
from stream.router import deadletter_doc, deadletter_key, decode_work, route
from stream.settings import Settings
from stream.store import PartitionStore, open_store

log = logging.getLogger(__name__)


class Runtime:
    """A worker's partitions, their detectors and the publishing of their results."""

    def __init__(self, app: faust.App, settings: Settings, clock: Clock) -> None:
        self.app = app
        self.settings = settings
        self.clock = clock
        self.detectors: dict[int, PartitionDetector] = {}
        self.stores: dict[int, PartitionStore] = {}
        self.loading: dict[int, asyncio.Task[PartitionDetector]] = {}
        self.lock = asyncio.Lock()
        self.catchup = CatchUp()
        self.sweep_open = False
        self._gate: asyncio.Task[None] | None = None
        raw = {"key_serializer": "raw", "value_serializer": "raw"}
        self.inputs = app.topic(settings.topic_roster, settings.topic_events, **raw)
        self.work = app.topic(settings.topic_work, partitions=settings.partitions, **raw)
        self.state = app.topic(settings.topic_state, partitions=settings.partitions, **raw)
        self.escalations = app.topic(settings.topic_escalations,
                                     partitions=settings.partitions, **raw)
        self.deadletter = app.topic(settings.topic_deadletter, **raw)

    # ---- partition ownership -------------------------------------------------------------

    def _work_partitions(self, tps: set[TP]) -> set[int]:
        return {tp.partition for tp in tps if tp.topic == self.settings.topic_work}

    async def on_assigned(self, assigned: set[TP]) -> None:
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
        return detector

    async def detector(self, p: int) -> PartitionDetector | None:
        if p in self.detectors:
            return self.detectors[p]
        task = self.loading.get(p)
        if task is None:
            return None
        return await asyncio.shield(task)

    # ---- the stages ------------------------------------------------------------------------

    async def route_batch(self, events: list[EventT]) -> None:
        messages = [(Source(e.message.topic, e.message.partition, e.message.offset), e.value)
                    for e in events]
        routed = route(messages, self.settings.topic_roster, self.settings.partitions)
        futures = [await self.work.send(value=value, partition=p)
                   for p, value in routed.encoded().items()]
        futures += await self._send_deadletters(routed.rejections, "router")
        await asyncio.gather(*futures)
        self._seen(events)

    async def detect_batch(self, events: list[EventT]) -> None:
        by_partition: dict[int, list[Any]] = defaultdict(list)
        broken: list[Rejection] = []
        for e in events:
            try:
                by_partition[e.message.partition].extend(decode_work(e.value))
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                broken.append(Rejection("invalid_work_message", repr(exc)[:200], e.value or b"",
                                        Source(e.message.topic, e.message.partition,
                                               e.message.offset)))
        if broken:
            await asyncio.gather(*await self._send_deadletters(broken, "detector"))
        for p, records in by_partition.items():
            detector = await self.detector(p)
            if detector is None:
                log.warning("work for partition %d that this worker does not own", p)
                continue
            async with self.lock:
                if self.detectors.get(p) is not detector:
                    continue  # revoked while waiting; the new owner replays it
                await self._publish(detector, detector.process(records))
        self._seen(events)

    def _seen(self, events: list[EventT]) -> None:
        for e in events:
            self.catchup.seen((e.message.topic, e.message.partition), e.message.offset)

    async def sweep(self) -> None:
        if not self.sweep_open:
            return
        for p, detector in list(self.detectors.items()):
            async with self.lock:
                if self.detectors.get(p) is not detector:
                    continue
                await self._publish(detector, detector.sweep())

    async def _publish(self, detector: PartitionDetector, out: Output) -> None:
        p = detector.partition
        futures = [await self.escalations.send(key=r["escalation_id"].encode(),
                                               value=orjson.dumps(r), partition=p)
                   for r in out.escalations]
        n = len(out.escalations)
        futures += await self._send_deadletters(out.rejections, "detector")
        sent = await asyncio.gather(*futures)
        store = self.stores.get(p)
        if n and store is not None:
            store.apply_escalations(out.escalations, max(m.offset for m in sent[:n]))
        delta = detector.take_delta()
        if delta is not None:
            meta = await (await self.state.send(value=orjson.dumps(delta), partition=p))
            if store is not None:
                store.apply_delta(delta, meta.offset)
        for r in out.escalations:
            log.info("escalation %s %s %s", r["status"], r["kind"], r["priority"])

    async def _send_deadletters(self, rejections: list[Any], stage: str) -> list[Any]:
        now = self.clock.now()
        futures = []
        for r in rejections:
            futures.append(await self.deadletter.send(
                key=deadletter_key(r), value=orjson.dumps(deadletter_doc(r, now, stage))))
        if rejections:
            log.info("dead-lettered %d records at %s", len(rejections), stage)
        return futures


def create_app(settings: Settings, clock: Clock | None = None) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{s}" for s in settings.bootstrap_servers],
        store="memory://",
        datadir=settings.datadir,
        web_port=settings.web_port,
        web_host="127.0.0.1",
        topic_partitions=settings.partitions,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_s,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
    )
    rt = Runtime(app, settings, clock or SystemClock())
    app.ecm_runtime = rt  # type: ignore[attr-defined]

    @app.agent(rt.inputs, name="ecm-router")
    async def router(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_max, settings.batch_within_s):
            await rt.route_batch(list(batch))

    @app.agent(rt.work, name="ecm-detector")
    async def detector(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_max, settings.batch_within_s):
            await rt.detect_batch(list(batch))

    @app.timer(interval=settings.sweep_interval_s, name="ecm-sweep")
    async def sweep() -> None:
        await rt.sweep()

    @app.on_partitions_assigned.connect
    async def assigned(sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        await rt.on_assigned(assigned)

    @app.on_partitions_revoked.connect
    async def revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        await rt.on_revoked(revoked)

    return app
