"""The worker's stages in process: messages routed, forwarded records decoded from their
ecm.work messages, every partition's batch applied, and what is published encoded as the
publisher encodes it. For tests of what input does to a worker without one."""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec

from stream.clock import ManualClock
from stream.contract import Codec, Rejection, Source
from stream.contract.bounds import Bounds
from stream.contract.deadletter import deadletter_doc
from stream.rules.detector import PartitionDetector
from stream.settings import Settings
from stream.state.changelog import encode_delta
from stream.topics import partition_for
from stream.worker.router import decode_work, route
from tests.factories import T0


class Worker:
    """One worker owning every partition, fed messages (``(topic, value)``, each sent to
    ``partition``, or keyed by its first record's client)."""

    def __init__(self, start: float = T0 - 600, **settings: Any) -> None:
        self.settings = Settings(partitions=4, **settings)
        self.clock = ManualClock(start)
        self.codec = Codec(Bounds.from_settings(self.settings))
        self.detectors = {p: PartitionDetector(p, self.settings, self.clock, self.codec)
                          for p in range(self.settings.partitions)}
        self.offsets: Counter[tuple[str, int]] = Counter()
        self.rejections: list[Rejection] = []
        self.escalations: list[Any] = []
        self.visits: list[dict[str, Any]] = []  # visit records, in the order written
        self.accepted: Counter[str] = Counter()

    def send(self, topic: str, value: bytes, partition: int = 0) -> None:
        s = self.settings
        offset = self.offsets[(topic, partition)]
        self.offsets[(topic, partition)] += 1
        routed = route([(Source(topic, partition, offset), value, 1.0)], s.topic_roster,
                       s.partitions, s.max_message_bytes, set(self.detectors), {}, self.codec,
                       actions_topic=s.topic_actions)
        batches: dict[int, list[Any]] = {p: list(r) for p, r in routed.local.items()}
        for p, work in routed.encoded():
            assert len(work) <= s.max_message_bytes
            batches.setdefault(p, []).extend(decode_work(work)[0])
        self._reject(routed.rejections, "router")
        for p, records in batches.items():
            self._apply(p, self.detectors[p].process(records))

    def keyed(self, topic: str, value: bytes, client_id: str) -> None:
        self.send(topic, value, partition_for(client_id, self.settings.partitions))

    def sweep(self, at: float) -> None:
        self.clock.set(at)
        for p, d in self.detectors.items():
            self._apply(p, d.sweep())

    def _apply(self, p: int, out: Any) -> None:
        self.accepted.update(out.accepted)
        self._reject(out.rejections, "detector")
        for e in out.escalations:
            assert len(msgspec.json.encode(e)) < self.settings.max_message_bytes
        self.escalations += out.escalations
        self.visits += out.visits
        delta = self.detectors[p].take_delta()
        if delta is not None:
            for _, value in encode_delta(delta, self.settings.max_message_bytes):
                assert len(value) <= self.settings.max_message_bytes

    def _reject(self, rejections: list[Rejection], stage: str) -> None:
        for r in rejections:
            deadletter_doc(r, self.clock.now(), stage)  # as published: it must encode
        self.rejections += rejections

    def reasons(self) -> Counter[str]:
        return Counter(r.reason for r in self.rejections)
