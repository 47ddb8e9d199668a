"""How fast the simulator builds a day and pushes it into Kafka: ``python -m benchmarks.simulator``.

The generator must never be what limits a benchmark. This builds the default region's day,
then plays every message as fast as the producer takes it (no simulated clock) into the
embedded broker, with 100-event messages and with one event per message, and checks that
the broker holds every event. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import orjson

from simulator.player import play
from simulator.scenario import SimConfig, build_scenario
from stream.broker import EmbeddedBroker, free_port
from stream.settings import Settings
from stream.topics import ensure_topics


def _count_events(settings: Settings, topic: str) -> int:
    """Events the broker holds on ``topic``, read back record by record."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=settings.bootstrap_servers, group_id=None,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    try:
        total = 0
        for record in consumer:
            doc = orjson.loads(record.value)
            total += len(doc) if isinstance(doc, list) else 1
        return total
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2_500)
    args = parser.parse_args(argv)
    result: dict[str, float] = {}
    t = time.perf_counter()
    sc = build_scenario(SimConfig(clients=args.clients, workers=args.workers))
    result["build_s"] = time.perf_counter() - t
    events = [m for m in sc.messages if m.topic == "events" and m.records]
    n_events = sum(len(m.records or []) for m in events)
    result["events"] = n_events
    with EmbeddedBroker(free_port()) as broker:
        for batch in (100, 1):
            settings = Settings(broker=broker.bootstrap, topic_roster=f"b{batch}.roster",
                                topic_events=f"b{batch}.events", topic_work=f"b{batch}.work",
                                topic_state=f"b{batch}.state",
                                topic_escalations=f"b{batch}.esc",
                                topic_visits=f"b{batch}.visits",
                                topic_deadletter=f"b{batch}.dl", partitions=4)
            ensure_topics(settings)
            stats = play(events, settings, None, batch, until=float("inf"), progress=False)
            held = _count_events(settings, settings.topic_events)
            assert held == stats.events, (held, stats.events)
            result[f"events_per_s_batch{batch}"] = stats.events_per_s
    print(f"built {len(sc.roster.visits):,} visits and {n_events:,} events in "
          f"{result['build_s']:.1f} s")
    print(f"produced {result['events_per_s_batch100']:,.0f} events/s in 100-event messages, "
          f"{result['events_per_s_batch1']:,.0f} events/s one per message")
    print(json.dumps({k: round(v, 3) for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
