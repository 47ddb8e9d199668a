"""The worker's web pages, on Faust's web server: metrics, progress, liveness, readiness."""

from __future__ import annotations

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream.worker.runtime import Runtime


def serve(app: faust.App, rt: Runtime) -> None:
    """Add the pages to the app."""

    @app.page("/metrics")
    async def metrics(web: View, request: Request) -> Response:
        # The exposition format's media type, with its version and charset as a header:
        # aiohttp refuses a charset inside content_type.
        return web.bytes(generate_latest(rt.metrics.registry),
                         headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/progress")
    async def progress(web: View, request: Request) -> Response:
        """Records received and applied by kind, and visits tracked, as JSON: for callers
        that poll often. A /metrics scrape renders every series, about 2 ms of the worker's
        time (10 a second is 2% of it); this costs a tenth of that."""
        return web.json(rt.progress())

    @app.page("/healthz")
    async def healthz(web: View, request: Request) -> Response:
        """Liveness: the event loop answers."""
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: View, request: Request) -> Response:
        """Readiness: partitions loaded, the backlog read, so deadlines are being swept, and
        the broker within reach."""
        ready = rt.ready
        return web.json({"ready": ready, "partitions": sorted(rt.detectors),
                         "run_partitions": sorted(rt.runs.parts) if rt.runs else [],
                         "broker_reachable": rt.broker_reachable},
                        status=200 if ready else 503)
