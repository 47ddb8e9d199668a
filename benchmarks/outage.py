"""A roster outage, in process: ``python -m benchmarks.outage``.

Check-ins keep arriving while the roster feed is down, so each waits for its roster record
(``unscheduled_grace_s``); then the roster comes back and every one of them is matched. A
worker must work such a backlog off at a cost per event that does not grow with the number
waiting. This runs the detector as a worker does, per 1,000-record batch: the batch
decoded from its message's bytes, processed, its state delta taken and encoded for
``ecm.state``; once with ``--events`` check-ins waiting and once with twice as many, side
by side, each size ``--repeat`` times alternating, the fastest run of each kept. The ratios
of the cost per event, the larger run's over the smaller's, are about 1 where the work is
linear in what waits and about 2 where it is quadratic. The last line printed is one JSON
object; ``--out`` also writes it to a file.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks import workload as wl
from benchmarks.pipeline import machine
from geofence.fences import warm_up
from stream.clock import ManualClock
from stream.contract import Codec, Source
from stream.rules.detector import PartitionDetector
from stream.settings import Settings
from stream.state.changelog import encode_delta
from stream.worker.heap import Heap

BATCH = 1000
T0 = 1_800_000_000.0  # the worker clock: a fixed instant, as the run is in process


def _phase(d: PartitionDetector, kind: str, topic: str, messages: list[bytes],
           limit: int, heap: Heap) -> tuple[float, int]:
    """Seconds and changelog bytes to process ``messages`` as batches of one message, with
    the collector handled as a worker handles it (stream/worker/heap.py): paused during a
    batch, and the state a batch of 1,000 roster records leaves behind settled after it."""
    written = 0
    started = time.perf_counter()
    for offset, value in enumerate(messages):
        with heap.paused():
            records = d.codec.records(value, kind == "roster")
            assert records is not None and None not in records
            d.process([(kind, r, Source(topic, 0, offset, i)) for i, r in enumerate(records)])
            delta = d.take_delta()
            if delta is not None:
                written += sum(len(v) for _, v in encode_delta(delta, limit))
            del records, delta
            if kind == "roster":
                heap.settle()
    return time.perf_counter() - started, written


def run(n: int) -> dict[str, float]:
    settings = Settings(unscheduled_grace_s=7200)
    d = PartitionDetector(0, settings, ManualClock(T0), Codec())
    heap = Heap()
    # The benchmark's check-ins, a few of them from the wrong place, a minute before the
    # clock and four minutes after their visits' start: in time, when they are matched.
    events = wl.messages(wl.check_ins(0, n, T0 - 60), BATCH)
    roster = wl.messages([wl.visit(i, T0 - 300) for i in range(n)], BATCH)
    limit = settings.max_message_bytes
    waiting_s, waiting_bytes = _phase(d, "event", settings.topic_events, events, limit, heap)
    held = len(d.pending)
    matched_s, matched_bytes = _phase(d, "roster", settings.topic_roster, roster, limit, heap)
    # Every check-in waited, and every one was matched when its roster came.
    assert held == n and not d.pending and d.checked_in == n, (held, len(d.pending))
    return {"events": n, "waiting_us_per_event": waiting_s / n * 1e6,
            "waiting_bytes_per_event": waiting_bytes / n,
            "matched_us_per_event": matched_s / n * 1e6,
            "matched_bytes_per_event": matched_bytes / n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000,
                        help="check-ins waiting in the smaller run (the larger has twice)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each size, alternating; the fastest of each is kept")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    warm_up()  # as a worker does before its first batch: no kernel compiled inside a run
    Heap.tune()
    runs: dict[int, list[dict[str, float]]] = {args.events: [], 2 * args.events: []}
    for _ in range(args.repeat):
        for n, done in runs.items():
            done.append(run(n))

    def best(done: list[dict[str, float]]) -> dict[str, float]:
        # The host's noise only ever adds time: each figure's least over the runs.
        return {key: min(r[key] for r in done) for key in done[0]}

    small, large = (best(done) for done in runs.values())
    result: dict[str, Any] = {"machine": machine(), "repeat": args.repeat, "small": small,
                              "large": large, "runs": list(runs.values())}
    for key in ("waiting_us_per_event", "matched_us_per_event", "waiting_bytes_per_event",
                "matched_bytes_per_event"):
        result[f"ratio_{key}"] = large[key] / small[key]
    print(f"{'':28}{small['events']:>12,}{large['events']:>12,}   ratio")
    for key, label in (("waiting_us_per_event", "waiting: µs per event"),
                       ("waiting_bytes_per_event", "waiting: bytes per event"),
                       ("matched_us_per_event", "matched: µs per event"),
                       ("matched_bytes_per_event", "matched: bytes per event")):
        print(f"{label:28}{small[key]:>12,.1f}{large[key]:>12,.1f}"
              f"{result['ratio_' + key]:>8.2f}")
    line = json.dumps(result)
    if args.out:
        args.out.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
