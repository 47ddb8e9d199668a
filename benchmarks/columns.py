"""Sizing the columnar design, in process: ``python -m benchmarks.columns``.

docs/performance.md names what a safe margin on the 100-event target would
take: visits held in columns rather than one object graph each. This measures how much
that could give before anyone rewrites the detector for it. Both sides read the same
100-event messages of the pipeline benchmark's workload, with ``--visits`` visits tracked
(keyed, 8 partitions), and are timed in CPU seconds, side by side in one run:

* **the detector**: the path a worker runs per batch (route, process, the state delta taken
  and encoded), with the collector handled as a worker handles it;
* **the sketch**: the same decode (the one-pass decoder), then per check-in only the lookups a
  common check-in needs (its visit's row, its client, the event index), and per slice of
  20,000 the geofence, the deadlines and the marks as array operations over columns, and
  the delta written as columns.

The sketch is not a detector: it decides only the common check-in (everything else would
take the full rules) and its delta leaves out where each event came from. Its rate is an
upper bound on what the design gives the rules' part of a worker's time, not a result.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import orjson

from benchmarks import workload as wl
from benchmarks.pipeline import machine
from geofence import kernels
from geofence.fences import warm_up
from stream.clock import ManualClock
from stream.contract import Codec, Source
from stream.rules.detector import PartitionDetector
from stream.settings import Settings
from stream.state.changelog import dumps, encode_delta
from stream.worker.heap import Heap
from stream.worker.router import route

NOW = 1_800_000_000.0  # the worker clock, fixed: the run is in process
PARTITIONS = 8
SLICE = 200  # 100-event messages a slice: 20,000 check-ins, as the worker's slices


def detector_path(roster: list[tuple[int | None, bytes]],
                  events: list[tuple[int | None, bytes]]) -> float:
    """Check-ins a CPU second through route, process, delta and encoding."""
    settings = Settings(partitions=PARTITIONS)
    clock = ManualClock(NOW)
    codec, heap = Codec(), Heap()
    detectors = {p: PartitionDetector(p, settings, clock, codec) for p in range(PARTITIONS)}
    owned = set(range(PARTITIONS))
    keyed: dict[tuple[str, int], bool] = {}  # what the router learns of each input partition

    def run(messages: list[tuple[int | None, bytes]], topic: str, per: int) -> int:
        done = 0
        for k in range(0, len(messages), per):
            with heap.paused():
                sourced = [(Source(topic, p or 0, k + j), value, 1.0)
                           for j, (p, value) in enumerate(messages[k:k + per])]
                routed = route(sourced, settings.topic_roster, PARTITIONS,
                               settings.max_message_bytes, owned, keyed, codec)
                for p, records in routed.local.items():
                    out = detectors[p].process(records)
                    done += out.accepted["event"]
                    delta = detectors[p].take_delta()
                    if delta is not None:
                        encode_delta(delta, settings.max_message_bytes)
                del sourced, routed
                if topic == settings.topic_roster:
                    heap.settle()
        return done

    run(roster, settings.topic_roster, 50)
    started = time.process_time()
    done = run(events, settings.topic_events, SLICE)
    seconds = time.process_time() - started
    assert done == sum(len(orjson.loads(v)) for _, v in events), done  # every one applied
    return done / seconds


def columnar_sketch(visits: list[dict[str, Any]], events: list[tuple[int | None, bytes]]
                    ) -> tuple[float, float]:
    """Check-ins a CPU second through the sketch, and its delta's bytes a check-in."""
    n = len(visits)
    codec, heap = Codec(), Heap()
    vids = [v["visit_id"] for v in visits]
    row = {vid: i for i, vid in enumerate(vids)}
    client = [v["client_id"] for v in visits]
    lat = np.array([v["location"]["lat"] for v in visits])
    lon = np.array([v["location"]["lon"] for v in visits])
    radius = np.full(n, 100.0)
    start = np.array([float(i % 3600) for i in range(n)]) + NOW + 3 * 3600
    late, missed = start + 900.0, start + 1800.0
    checked = np.zeros(n, dtype=bool)
    ci_occurred = np.full(n, np.nan)
    ci_received = np.full(n, np.nan)
    ci_event: list[str | None] = [None] * n
    index: dict[str, tuple[int, int]] = {}
    written = done = 0
    started = time.process_time()
    for k in range(0, len(events), SLICE):
        with heap.paused():
            rows: list[int] = []
            ids: list[str] = []
            la: list[float] = []
            lo: list[float] = []
            acc: list[float] = []
            occ: list[float] = []
            for offset, (_, value) in enumerate(events[k:k + SLICE], start=k):
                for i, ev in enumerate(codec.records(value, False) or ()):
                    r = row.get(ev.visit_id)
                    if r is None or client[r] != ev.client_id or ev.event_id in index:
                        continue  # the full rules' case: not sketched
                    index[ev.event_id] = (offset, i)
                    rows.append(r)
                    ids.append(ev.event_id)
                    la.append(ev.lat)
                    lo.append(ev.lon)
                    acc.append(65.0 if ev.accuracy_m is None else ev.accuracy_m)
                    occ.append(ev.occurred_at)
            r_ = np.array(rows)
            o = np.array(occ)
            codes, _, _ = kernels.classify_circles(
                np.array(la), np.array(lo), np.array(acc), lat[r_], lon[r_], radius[r_],
                kernels.ACCURACY_68_TO_95)
            common = (codes == kernels.INSIDE) & ~checked[r_] & (o <= late[r_]) & (
                o <= missed[r_])
            at = r_[common]
            checked[at] = True
            ci_occurred[at] = o[common]
            ci_received[at] = NOW
            taken = np.flatnonzero(common).tolist()
            for j in taken:
                ci_event[rows[j]] = ids[j]
            written += len(dumps({"rows": [vids[j] for j in at.tolist()],
                                  "occurred": o[common].tolist(),
                                  "events": [ids[j] for j in taken]}))
            done += len(taken)
    seconds = time.process_time() - started
    # Every check-in is new, in time and names its visit; all but the wrong-place ones
    # (the full rules' case) take the common path.
    expected = sum(1 for i in range(len(index)) if not wl.wrong_place(i))
    assert done == expected, (done, expected)
    return done / seconds, written / done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--visits", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args(argv)
    warm_up()
    Heap.tune()
    visits = list(wl.roster(args.visits, NOW + 3 * 3600))
    roster = wl.keyed_messages(visits, 1000, PARTITIONS)
    events = wl.keyed_messages(wl.check_ins(0, args.events, NOW), 100, PARTITIONS)
    detector = detector_path(roster, events)
    del roster
    sketch, sketch_bytes = columnar_sketch(visits, events)
    result = {"machine": machine(), "visits": args.visits, "events": args.events,
              "detector_events_per_cpu_s": round(detector),
              "sketch_events_per_cpu_s": round(sketch),
              "sketch_vs_detector": round(sketch / detector, 2),
              "sketch_delta_bytes_per_event": round(sketch_bytes, 1)}
    print(f"the detector's path: {detector:,.0f} check-ins per CPU second")
    print(f"the columnar sketch: {sketch:,.0f} check-ins per CPU second "
          f"({sketch / detector:.2f}x; an upper bound, see the module's docstring)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
