"""A million hostile inputs through a real worker: ``python -m benchmarks.fuzz``.

Generated from a seed (tests/fuzz.py): mutated valid records of ``ecm.roster``,
``ecm.events`` and ``ecm.actions`` (wrong types, missing and extra fields, huge strings and
arrays, deep nesting, NaN and infinities, odd Unicode, invalid UTF-8, times at the edges,
truncated and bit-flipped JSON) and random bytes, sent to the embedded broker, half keyed
and half to any partition, to one ``ecm worker`` process.

Passes when the worker never exits, every record is accounted for per topic (accepted, by
the worker's /progress, plus dead-lettered, by the dead letters' source topic, equals sent),
and its memory stays bounded: sampled every second, the peak is reported with the visits
it holds, so growth beyond what the accepted visits take shows. ``--huge`` scales how often
a mutation makes a message large (1.0 in the test suite's small run): the embedded broker
keeps every message in memory, and a million records at the test's mix would be 6.5 GB.
The last line printed is one JSON object; ``--out`` also writes it to a file.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer

from benchmarks.pipeline import machine
from stream.broker import EmbeddedBroker, free_port
from stream.contract.deadletter import REASONS
from stream.security import connection
from stream.settings import Settings
from stream.topics import ensure_topics
from tests import fuzz
from tests.cluster import WorkerProcess


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _progress(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/progress", timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


class Sampler(threading.Thread):
    """The worker's resident memory, once a second."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.stop.wait(1.0):
            try:
                self.samples.append((time.monotonic() - start, _rss_mb(self.pid)))
            except OSError:
                return


class DeadLetters:
    """Dead letters counted as they come, by source topic and reason (nothing held)."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = KafkaConsumer(settings.topic_deadletter, **connection(settings),
                                      auto_offset_reset="earliest", enable_auto_commit=False,
                                      group_id=None, consumer_timeout_ms=500,
                                      fetch_max_bytes=64 << 20)
        self.by_topic: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()

    def poll(self) -> None:
        for m in self.consumer:
            d = orjson.loads(m.value)
            self.by_topic[d["source"]["topic"]] += 1
            self.reasons[d["reason"]] += 1


def run(records: int, seed: int, huge: float, grace_s: float, timeout_s: float
        ) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(free_port()) as broker:
        settings = Settings(broker=broker.bootstrap, app_id="bench-fuzz", partitions=4,
                            unscheduled_grace_s=grace_s)
        ensure_topics(settings)
        worker = WorkerProcess(settings, Path(tmp), "fuzz").start()
        worker.wait_ready()
        assert worker.process is not None
        sampler = Sampler(worker.process.pid)
        sampler.start()
        baseline = _rss_mb(worker.process.pid)
        started = time.monotonic()
        sent = fuzz.produce(settings, fuzz.messages(seed, records, time.time(), huge), seed)
        sent_s = time.monotonic() - started
        dead = DeadLetters(settings)
        port = worker.settings.web_port
        deadline = time.monotonic() + timeout_s
        got: dict[str, int] = {}
        while time.monotonic() < deadline:
            dead.poll()
            got = fuzz.accounted(settings, _progress(port)["accepted"], dead.by_topic)
            if got == dict(sent) or worker.process.poll() is not None:
                break
        accounted_s = time.monotonic() - started
        # Nothing more may come: one more grace, then read again.
        time.sleep(grace_s + 2)
        dead.poll()
        progress = _progress(port) if worker.process.poll() is None else {}
        got = fuzz.accounted(settings, progress.get("accepted", Counter()), dead.by_topic)
        sampler.stop.set()
        sampler.join()
        alive = worker.process.poll() is None
        errors = worker.log().count("Traceback")
        worker.stop()
        dead.consumer.close()
    peak = max((r for _, r in sampler.samples), default=baseline)
    return {
        "benchmark": "fuzz", "records": sum(sent.values()), "seed": seed, "huge": huge,
        "sent": dict(sent), "accounted": got, "exact": got == dict(sent),
        "accepted": progress.get("accepted"), "dead_lettered": sum(dead.by_topic.values()),
        "reasons": dict(dead.reasons.most_common()),
        "reasons_unnamed": sorted(set(dead.reasons) - set(REASONS)),
        "worker_alive": alive, "tracebacks": errors,
        "send_s": round(sent_s, 1), "accounted_s": round(accounted_s, 1),
        "rss_baseline_mb": round(baseline, 1), "rss_peak_mb": round(peak, 1),
        "visits_tracked": progress.get("visits_tracked"),
        "rss_mb_at_quarters": [round(r, 1) for r in _quarters(sampler.samples)],
        "machine": machine(),
    }


def _quarters(samples: list[tuple[float, float]]) -> list[float]:
    if not samples:
        return []
    n = len(samples)
    return [samples[min(n - 1, n * k // 4)][1] for k in (1, 2, 3, 4)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=29)
    parser.add_argument("--huge", type=float, default=0.05)
    parser.add_argument("--grace", type=float, default=10.0,
                        help="ECM_UNSCHEDULED_GRACE_S: events naming no rostered visit wait")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    result = run(args.records, args.seed, args.huge, args.grace, args.timeout)
    line = json.dumps(result)
    print(line)
    if args.out:
        args.out.write_text(line + "\n")
    ok = result["exact"] and result["worker_alive"] and not result["tracebacks"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
