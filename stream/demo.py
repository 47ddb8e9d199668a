"""``make demo``: the embedded broker, one worker, the duty desk's board, a live feed and the
escalations it causes."""

from __future__ import annotations

import collections
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

from simulator.demo_feed import Feed, build_demo_feed
from stream.broker import EmbeddedBroker, free_port, port_open
from stream.contract.records import lifecycle
from stream.security import connection
from stream.settings import Settings
from stream.topics import by_partition, ensure_topics
from stream.watch import describe

_FEED_TICK_S = 0.25


def run_demo(duration_s: float = 0.0, visits: int = 300, seed: int = 7) -> int:
    from kafka import KafkaConsumer

    port = free_port() if port_open(9092) else 9092
    datadir = Path(tempfile.mkdtemp(prefix="ecm-demo-"))
    with EmbeddedBroker(port) as broker:
        settings = Settings.from_env(broker=broker.bootstrap, datadir=str(datadir / "worker"),
                                     web_port=free_port())
        ensure_topics(settings)
        log_path = datadir / "worker.log"
        worker = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker"],
            env={**os.environ, **settings.as_env()},
            stdout=log_path.open("w"), stderr=subprocess.STDOUT)
        # The duty desk's board beside it, with a token made for this run.
        token = secrets.token_urlsafe(12)
        desk_port = free_port()
        desk = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "desk"],
            env={**os.environ, **settings.with_(desk_port=desk_port).as_env(),
                 "ECM_DESK_TOKENS": f"demo:{token}"},
            stdout=(datadir / "desk.log").open("w"), stderr=subprocess.STDOUT)
        now = time.time()
        feed = build_demo_feed(now, visits=visits, seed=seed)
        print(f"broker {broker.bootstrap}; worker log {log_path}; worker metrics "
              f"http://127.0.0.1:{settings.web_port}/metrics")
        print(f"the duty desk's board: http://127.0.0.1:{desk_port}/ (sign in as demo, "
              f"token {token})")
        print(f"{len(feed.roster)} visits, {len(feed.events)} check-ins and check-outs to come; "
              "thresholds: late 15 min, missed 30 min after the scheduled start")
        print("Ctrl-C stops." if not duration_s else f"Stopping after {duration_s:.0f} s.")
        stop = threading.Event()
        feeder = threading.Thread(target=_play, args=(settings, feed, stop), daemon=True)
        feeder.start()
        consumer = KafkaConsumer(settings.topic_escalations, settings.topic_deadletter,
                                 **connection(settings),
                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                 group_id=None, consumer_timeout_ms=500)
        counts: collections.Counter[tuple[str, str]] = collections.Counter()
        dead: collections.Counter[str] = collections.Counter()
        colour = sys.stdout.isatty()
        try:
            while not duration_s or time.time() - now < duration_s:
                if worker.poll() is not None:
                    print(f"the worker exited with status {worker.returncode}; see {log_path}")
                    return 1
                for message in consumer:
                    doc = orjson.loads(message.value)
                    if message.topic == settings.topic_deadletter:
                        dead[doc["reason"]] += 1
                        print(f"{'':8}  DEAD-LETTER  {doc['reason']}: {doc['detail']}")
                        continue
                    stage = lifecycle(doc)
                    if stage is not None:
                        counts[(doc["kind"], stage)] += 1
                    print(describe(doc, colour), flush=True)
                    if duration_s and time.time() - now >= duration_s:
                        break
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            desk.terminate()
            worker.terminate()
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
            consumer.close()
        _summary(counts, dead)
    return 0


def _play(settings: Settings, feed: Feed, stop: threading.Event) -> None:
    """Send the roster at once, then each event when its instant comes, in gateway batches."""
    from kafka import KafkaProducer

    producer = KafkaProducer(**connection(settings), linger_ms=5)
    # Keyed by client: each message goes to its records' partition (docs/contract.md, "Messages").
    for p, group in by_partition(feed.roster, settings.partitions).items():
        for i in range(0, len(group), 100):
            producer.send(settings.topic_roster, orjson.dumps(group[i:i + 100]), partition=p)
    producer.flush()
    events = collections.deque(feed.events)
    bad = collections.deque(sorted(feed.bad))
    while not stop.is_set() and (events or bad):
        now = time.time()
        due = []
        while events and events[0][0] <= now:
            due.append(events.popleft()[1])
        for p, group in by_partition(due, settings.partitions).items():
            for i in range(0, len(group), 100):
                producer.send(settings.topic_events, orjson.dumps(group[i:i + 100]),
                              partition=p)
        while bad and bad[0][0] <= now:
            _, raw, topic = bad.popleft()
            producer.send(topic, raw)
        producer.flush()
        stop.wait(_FEED_TICK_S)
    producer.close()


def _summary(counts: collections.Counter[tuple[str, str]], dead: collections.Counter[str]) -> None:
    print("\nescalations seen:")
    for kind in sorted({k for k, _ in counts}):
        print(f"  {kind:<20} raised {counts[(kind, 'open')]:>4}   "
              f"resolved {counts[(kind, 'resolved')]:>4}")
    print("dead letters: " + (", ".join(f"{r} {n}" for r, n in sorted(dead.items())) or "none"))

