"""The yardstick: the location rule written the idiomatic Faust way, one event at a time.

``python -m benchmarks.baseline`` with ``BENCH_BROKER``, ``BENCH_PREFIX`` (its topics are
``<prefix>.roster`` and ``<prefix>.events``, created by the benchmark) and ``BENCH_WEB_PORT``.

Roster records and check-ins are repartitioned by visit id (one send per record), each visit
is a table key, each check-in reads its visit from the table, measures the distance with a
Python haversine, writes the visit's state back (one table write, so one changelog record,
per event) and sends one escalation when the worker was outside the fence. This is how the
Faust documentation builds a stateful stream; ``/count`` reports its progress.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

BROKER = os.environ.get("BENCH_BROKER", "127.0.0.1:9092")
PREFIX = os.environ.get("BENCH_PREFIX", "bench.base")
PARTITIONS = int(os.environ.get("BENCH_PARTITIONS", "8"))
DEFAULT_RADIUS_M = 200.0  # the contract's default fence radius

app = faust.App(f"bench-baseline-{PREFIX}", broker=f"kafka://{BROKER}", store="memory://",
                web_port=int(os.environ.get("BENCH_WEB_PORT", "6071")), web_host="127.0.0.1",
                consumer_auto_offset_reset="earliest", topic_partitions=PARTITIONS,
                datadir=os.environ.get("BENCH_DATADIR", "bench-baseline"))
roster_in = app.topic(f"{PREFIX}.roster", value_serializer="raw")
events_in = app.topic(f"{PREFIX}.events", value_serializer="raw")
visits_by_id = app.topic(f"{PREFIX}.visits-by-id", key_type=str, value_serializer="json",
                         partitions=PARTITIONS)
events_by_visit = app.topic(f"{PREFIX}.events-by-visit", key_type=str, value_serializer="json",
                            partitions=PARTITIONS)
escalations = app.topic(f"{PREFIX}.escalations", key_type=str, value_serializer="json")
visits = app.Table("visits", default=None, partitions=PARTITIONS)
visit_state = app.Table("visit-state", default=None, partitions=PARTITIONS)
counts = {"visits": 0, "events": 0, "escalations": 0, "first": 0.0, "last": 0.0,
          "visits_split": 0, "events_split": 0}


def _records(value: bytes) -> list[dict[str, Any]]:
    doc = orjson.loads(value)
    return doc if isinstance(doc, list) else [doc]


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


async def _repartition(stream: faust.StreamT, to: faust.TopicT, kind: str) -> None:
    async for value in stream:
        for record in _records(value):
            await to.send(key=record["visit_id"], value=record)
            counts[f"{kind}_split"] += 1


@app.agent(roster_in)
async def split_roster(stream: faust.StreamT) -> None:
    await _repartition(stream, visits_by_id, "visits")


@app.agent(visits_by_id)
async def load_roster(stream: faust.StreamT) -> None:
    async for record in stream:
        visits[record["visit_id"]] = record
        counts["visits"] += 1


@app.agent(events_in)
async def split_events(stream: faust.StreamT) -> None:
    await _repartition(stream, events_by_visit, "events")


@app.agent(events_by_visit)
async def check(stream: faust.StreamT) -> None:
    async for event in stream:
        now = time.time()
        if not counts["first"]:
            counts["first"] = now
        visit_id = event["visit_id"]
        visit = visits.get(visit_id)
        if visit is not None:
            home = visit["location"]
            distance = haversine_m(home["lat"], home["lon"], event["lat"], event["lon"])
            radius = visit.get("geofence_radius_m", DEFAULT_RADIUS_M)
            state = dict(visit_state.get(visit_id) or {})
            state.setdefault("checkins", {})[event["worker_id"]] = event["occurred_at"]
            visit_state[visit_id] = state
            if distance > radius + event.get("accuracy_m", 0.0):
                await escalations.send(key=f"{visit_id}:location_mismatch", value={
                    "visit_id": visit_id, "kind": "location_mismatch",
                    "distance_m": round(distance, 1)})
                counts["escalations"] += 1
        counts["events"] += 1
        counts["last"] = time.time()


@app.page("/count")
async def count(web: View, request: Request) -> Response:
    return web.json(counts)


if __name__ == "__main__":
    app.main()
