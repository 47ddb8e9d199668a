"""The Faust application: agents, timers and partition signals, wired to the runtime."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable
from typing import Any

import faust
from faust.types import TP

from geofence import warm_up
from stream.clock import Clock
from stream.security import faust_credentials
from stream.settings import Settings
from stream.worker.faust_patches import EcmApp, QuietMonitor, install
from stream.worker.lane import Lanes
from stream.worker.logs import quiet_kafka_client
from stream.worker.runtime import Runtime
from stream.worker.web import serve

log = logging.getLogger(__name__)

# A worker asked to stop is gone this long after, broker or no broker.
_STOP_WITHIN_S = 8.0
# How often a worker asks for its work partitions' end offsets (the lag gauge; its input
# partitions' are asked for at every probe).
_LAG_INTERVAL_S = 5.0


async def _or_exit(work: Awaitable[None]) -> None:
    """Run a batch (or a sweep); on an unexpected error, end the process before the batch
    is acked.

    Faust acks a batch whose agent raised and restarts the agent: the batch would be lost.
    Bad input never raises (it is dead-lettered) and a broker out of reach is waited for
    (stream/worker/publisher.py), so an error here is a bug.
    Exiting leaves the batch uncommitted: the supervisor (systemd, Kubernetes) restarts the
    worker, or another worker takes the partitions, and the batch is processed again.
    """
    try:
        await work
    except Exception:
        log.exception("a batch could not be processed; exiting so that it is replayed")
        logging.shutdown()
        os._exit(70)


def create_app(settings: Settings, clock: Clock | None = None) -> EcmApp:
    install()
    quiet_kafka_client()
    # Before the worker joins its group: a kernel's first call would otherwise compile it
    # inside the first batch of GPS fixes, with the event loop held (geofence.warm_up).
    kernels_s = warm_up()
    app = EcmApp(
        settings.app_id,
        broker=[f"kafka://{s}" for s in settings.bootstrap_servers],
        broker_credentials=faust_credentials(settings),
        store="memory://",
        datadir=settings.datadir,
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        topic_partitions=settings.partitions,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_s,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        monitor=QuietMonitor(),
    )
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    app.stop_within_s = _STOP_WITHIN_S
    rt = Runtime(app, settings, clock or settings.make_clock())

    # The two stages, whichever lane hands them their messages.
    async def route(messages: list[Any]) -> None:
        await _or_exit(rt.route_batch(messages))

    async def detect(messages: list[Any]) -> None:
        await _or_exit(rt.detect_batch(messages))

    # The agents subscribe the worker to its topics. With the batch lane (lane.py)
    # their streams stay empty: each fetch's messages go to the same stages as lists.
    @app.agent(rt.inputs, name="ecm-router")
    async def router(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_max, settings.batch_within_s):
            await route([e.message for e in batch])

    @app.agent(rt.work, name="ecm-detector")
    async def detector(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_max, settings.batch_within_s):
            await detect([e.message for e in batch])

    lanes: dict[str, Any] = {**{t: route for t in settings.input_topics},
                             settings.topic_work: detect}
    if rt.runs_topic is not None:
        async def runs(messages: list[Any]) -> None:
            await _or_exit(rt.runs_batch(messages))

        @app.agent(rt.runs_topic, name="ecm-runs")
        async def run_agent(stream: faust.StreamT) -> None:
            async for batch in stream.take_events(settings.batch_max, settings.batch_within_s):
                await runs([e.message for e in batch])

        lanes[settings.topic_runs] = runs

    if settings.input_lane == "batch":
        app.lanes = Lanes(lanes, settings.batch_max)

    @app.timer(interval=settings.sweep_interval_s, name="ecm-sweep")
    async def sweep() -> None:
        # A broker out of reach does not raise here (the publisher waits for it); anything
        # else is a bug, and the worker exits so that its partitions are rebuilt.
        await _or_exit(rt.sweep())

    @app.task
    async def started() -> None:
        log.info("geofence kernels ready in %.2f s", kernels_s)

    # As often as the sweep: a deadline waits for the read marks the probe moves. A loop,
    # not a timer: a probe that reads a batch may take the whole interval, and the next
    # then starts at once (a Faust timer warns of every overlap).
    @app.task
    async def probe() -> None:
        while not app.should_stop:
            began = asyncio.get_running_loop().time()
            try:
                await rt.probe()
            except Exception:  # the marks must keep moving: logged, and probed again
                log.exception("the read-mark probe failed")
            elapsed = asyncio.get_running_loop().time() - began
            await asyncio.sleep(max(0.0, settings.sweep_interval_s - elapsed))

    @app.timer(interval=_LAG_INTERVAL_S, name="ecm-lag")
    async def lag() -> None:
        await rt.refresh_lag()

    @app.on_partitions_assigned.connect
    async def assigned(sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        await rt.on_assigned(assigned)

    @app.on_partitions_revoked.connect
    async def revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        await rt.on_revoked(revoked)

    @app.on_before_shutdown.connect
    async def shutdown(sender: Any, **kwargs: Any) -> None:
        await rt.close()

    serve(app, rt)

    return app
