"""What the duty desk sees: every escalation id on ``ecm.escalations`` and when it first
reached the topic, read in a thread while the day is played.

A desk acts on a case only once its escalation is on the board, as people do; the player
holds each of the desk's actions until then (simulator/player.py). When the escalation
reached the topic is also a bound the ledger uses: the monitor raised it no later.
"""

from __future__ import annotations

import threading

import orjson

from stream.security import connection
from stream.settings import Settings


class EscalationWatch:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.seen: dict[str, float] = {}  # escalation id -> its first Kafka timestamp (wall)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="escalation-watch",
                                        daemon=True)

    def start(self) -> EscalationWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def has(self, escalation_id: str) -> bool:
        with self._lock:
            return escalation_id in self.seen

    def _run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        topic = self.settings.topic_escalations
        consumer = KafkaConsumer(**connection(self.settings),
                                 group_id=None, enable_auto_commit=False,
                                 fetch_max_wait_ms=100)
        try:
            parts = [TopicPartition(topic, p)
                     for p in sorted(consumer.partitions_for_topic(topic) or [])]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=100, max_records=10_000).values():
                    for r in records:
                        self._note(r.value, r.timestamp / 1e3)
        finally:
            consumer.close()

    def _note(self, value: bytes | None, at: float) -> None:
        try:
            doc = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            return
        eid = doc.get("escalation_id") if isinstance(doc, dict) else None
        if isinstance(eid, str):
            with self._lock:
                self.seen.setdefault(eid, at)
