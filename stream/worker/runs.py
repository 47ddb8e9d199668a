"""A worker's run partitions: the partitions of ``ecm.runs`` it owns, each the runs of the
workers whose id hashes to it (stream/rules/runs.py), and the predictions they send back
to the visits' partitions through ``ecm.work`` (stream/rules/at_risk.py).

``ecm.runs`` is its own changelog: a fact applied twice changes nothing, so a partition
given to this worker is rebuilt by reading the topic back :data:`HORIZON_S`, up to its end,
while the agent reads on from the group's committed offset (the overlap is applied twice,
harmlessly). Batches wait for their partition's rebuild.

Every run is predicted again each :data:`RUN_SWEEP_S` of the worker clock (a worker inside a
visit past its end, or not started, moves with the clock), and every prediction is sent
again each :data:`REFRESH_S` (a visit partition rebuilt holds none).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.clock import Clock
from stream.rules.runfacts import apply, prediction_doc
from stream.rules.runs import Prediction, Runs, Travel
from stream.security import connection
from stream.settings import Settings
from stream.worker.metrics import Metrics
from stream.worker.publisher import Publisher

log = logging.getLogger(__name__)

HORIZON_S = 36 * 3600.0  # wall seconds of ecm.runs a rebuilt partition reads back
RUN_SWEEP_S = 60.0
REFRESH_S = 600.0
FORGET_AFTER_S = 12 * 3600.0  # a stop is dropped this long after its visit's end
_QUIET_MS = 300
_SWEEP_SLICE = 500  # runs predicted between yields to the event loop


class RunPartitions:
    def __init__(self, settings: Settings, clock: Clock, publisher: Publisher,
                 metrics: Metrics) -> None:
        self.settings = settings
        self.clock = clock
        self.publisher = publisher
        self.metrics = metrics
        self.parts: dict[int, Runs] = {}
        self.loading: dict[int, asyncio.Task[Runs]] = {}
        self._swept = -math.inf
        self._refreshed = clock.now()

    def assigned(self, partitions: set[int]) -> None:
        for p in [p for p in (*self.parts, *self.loading) if p not in partitions]:
            self.parts.pop(p, None)
            task = self.loading.pop(p, None)
            if task is not None:
                task.cancel()
        for p in sorted(partitions):
            if p not in self.parts and p not in self.loading:
                task = asyncio.ensure_future(self._load(p))
                self.loading[p] = task
                task.add_done_callback(lambda t, p=p: self._loaded(p, t))

    def _loaded(self, p: int, task: asyncio.Task[Runs]) -> None:
        if self.loading.get(p) is task:
            del self.loading[p]
            if not task.cancelled():
                self.parts[p] = task.result()

    async def _runs(self, p: int) -> Runs | None:
        task = self.loading.get(p)
        if task is not None:
            # Until it is done, however it ends (a revoked partition's rebuild is
            # cancelled: then there is nothing here); a cancellation of this caller's
            # own still propagates.
            await asyncio.wait({task})
        return self.parts.get(p)

    async def _load(self, p: int) -> Runs:
        """The partition's runs, rebuilt from what ``ecm.runs`` holds of the horizon; from
        nothing, logged, if the topic cannot be read (the facts from now on still come)."""
        try:
            return await self._read_back(p)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("run partition %d: could not be rebuilt; starting empty", p)
            return Runs(Travel(self.settings.run_speed_m_s, self.settings.run_overhead_s))

    async def _read_back(self, p: int) -> Runs:
        s = self.settings
        runs = Runs(Travel(s.run_speed_m_s, s.run_overhead_s))
        tp = TopicPartition(s.topic_runs, p)
        consumer = AIOKafkaConsumer(**connection(s), group_id=None,
                                    enable_auto_commit=False, fetch_max_wait_ms=100)
        await consumer.start()
        bad = 0
        try:
            consumer.assign([tp])
            since = int((time.time() - HORIZON_S) * 1000)
            found = (await consumer.offsets_for_times({tp: since})).get(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            consumer.seek(tp, found.offset if found is not None else end)
            while True:
                past_end = await consumer.position(tp) >= end
                batch = await consumer.getmany(tp, timeout_ms=_QUIET_MS if past_end else 1000,
                                               max_records=5000)
                records = batch.get(tp, ())
                if not records and past_end:
                    break
                for r in records:
                    bad += self._apply(runs, p, r.value)[1]
        finally:
            await consumer.stop()
        if bad:
            log.error("run partition %d: %d facts could not be read back", p, bad)
        return runs

    def _apply(self, runs: Runs, p: int, value: bytes | None) -> tuple[set[str], int]:
        try:
            facts = orjson.loads(value or b"")["facts"]
        except (orjson.JSONDecodeError, TypeError, KeyError):
            return set(), 1
        if not isinstance(facts, list):
            return set(), 1
        return apply(runs, facts, p, self.settings.partitions)

    # ---- facts in, predictions out ---------------------------------------------------------

    async def batch(self, messages: list[Any]) -> None:
        """Apply a batch of ``ecm.runs`` messages, and send what moved."""
        by_partition: dict[int, list[Any]] = defaultdict(list)
        for m in messages:
            by_partition[m.partition].append(m.value)
        now = self.clock.now()
        predictions: list[Prediction] = []
        for p, values in by_partition.items():
            runs = await self._runs(p)
            if runs is None:
                continue  # not this worker's any more: its new owner reads it
            touched: set[str] = set()
            bad = 0
            for value in values:
                t, b = self._apply(runs, p, value)
                touched |= t
                bad += b
            if bad:
                log.error("run partition %d: %d facts could not be read", p, bad)
            for worker in touched:
                predictions += runs.changed(worker, now)
        await self.send(predictions)

    async def sweep(self) -> None:
        """Predict every run again (each RUN_SWEEP_S), everything sent again each
        REFRESH_S, and the ended stops forgotten."""
        now = self.clock.now()
        if now - self._swept < RUN_SWEEP_S:
            return
        self._swept = now
        refresh = now - self._refreshed >= REFRESH_S
        if refresh:
            self._refreshed = now
        predictions: list[Prediction] = []
        for p in list(self.parts):
            runs = self.parts.get(p)
            if runs is None:
                continue
            runs.forget(now - FORGET_AFTER_S)
            for k, (worker, run) in enumerate(list(runs.runs.items())):
                if refresh:
                    run.sent.clear()
                predictions += runs.changed(worker, now)
                if k % _SWEEP_SLICE == _SWEEP_SLICE - 1:
                    await asyncio.sleep(0)  # some 50 ms of work: the loop breathes
            await asyncio.sleep(0)
        await self.send(predictions)

    async def send(self, predictions: list[Prediction]) -> None:
        """Each prediction to its visit's partition of ``ecm.work``, acknowledged."""
        if not predictions:
            return
        items: dict[int, list[list[Any]]] = defaultdict(list)
        for pr in predictions:
            items[pr.partition].append(["prediction", [self.settings.topic_runs, 0, 0, 0], 0,
                                        prediction_doc(pr)])
        sends = [("none", self.settings.topic_work, None, orjson.dumps({"items": part}), p)
                 for p, part in items.items()]
        await self.publisher.send_all(sends)
        self.metrics.predictions_sent.inc(len(predictions))

    @property
    def ready(self) -> bool:
        return not self.loading
