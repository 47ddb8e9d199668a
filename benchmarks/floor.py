"""The Faust floor: a bare Faust agent that reads the messages and does nothing with them.

``python -m benchmarks.floor`` with ``BENCH_BROKER``, ``BENCH_TOPIC``, ``BENCH_PER_MESSAGE``
(events in each message) and ``BENCH_WEB_PORT``. It consumes the topic with the same loop as
the ECM worker's agents (``take_events`` batches) and counts; ``/count`` reports how many
events it has passed and when the first and the last batch arrived. Nothing a Faust
application with Faust's default monitor does with a message can cost less than this.
``BENCH_QUIET_MONITOR=1`` gives it the ECM worker's monitor instead
(``stream.worker.faust_patches.QuietMonitor``, without Faust's per-message statistics).
"""

from __future__ import annotations

import os
import time

import faust
from faust.web import Request, Response, View

from stream.worker.faust_patches import QuietMonitor

BROKER = os.environ.get("BENCH_BROKER", "127.0.0.1:9092")
TOPIC = os.environ.get("BENCH_TOPIC", "bench.raw")
PER_MESSAGE = int(os.environ.get("BENCH_PER_MESSAGE", "1"))
QUIET = os.environ.get("BENCH_QUIET_MONITOR") == "1"

# Its own consumer group for each monitor: each floor reads the topic from the start.
app = faust.App(f"bench-floor-{TOPIC}{'-quiet' if QUIET else ''}", broker=f"kafka://{BROKER}",
                store="memory://", web_port=int(os.environ.get("BENCH_WEB_PORT", "6070")),
                web_host="127.0.0.1", topic_allow_declare=False,
                consumer_auto_offset_reset="earliest", stream_wait_empty=False,
                datadir=os.environ.get("BENCH_DATADIR", "bench-floor"),
                **({"monitor": QuietMonitor()} if QUIET else {}))
topic = app.topic(TOPIC, key_serializer="raw", value_serializer="raw")
counts = {"events": 0, "first": 0.0, "last": 0.0}


@app.agent(topic)
async def floor(stream: faust.StreamT) -> None:
    async for batch in stream.take_events(500, 0.05):
        now = time.time()
        if not counts["first"]:
            counts["first"] = now
        counts["events"] += len(batch) * PER_MESSAGE
        counts["last"] = now


@app.page("/count")
async def count(web: View, request: Request) -> Response:
    return web.json(counts)


if __name__ == "__main__":
    app.main()
