"""A detector on a manual clock, fed like the stream feeds it."""

from __future__ import annotations

import itertools
from typing import Any

from stream.clock import ManualClock
from stream.contract import Rejection, Source
from stream.detector import Output, PartitionDetector
from stream.settings import Settings
from stream.timeutil import parse_instant
from tests.factories import T0


class Harness:
    def __init__(self, start: float = T0 - 3600, **settings: Any) -> None:
        self.clock = ManualClock(start)
        self.settings = Settings(**settings)
        self.detector = PartitionDetector(0, self.settings, self.clock)
        self.escalations: list[dict[str, Any]] = []
        self.rejections: list[Rejection] = []
        self._offsets = itertools.count()
        self.last: Output | None = None

    def source(self, topic: str) -> Source:
        return Source(topic, 0, next(self._offsets), 0)

    def feed(self, *records: tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], Source]) -> Output:
        batch = []
        for r in records:
            kind, obj = r[0], r[1]
            src = r[2] if len(r) == 3 else self.source("ecm.roster" if kind == "roster" else "ecm.events")
            batch.append((kind, obj, src))
        return self._collect(self.detector.process(batch))

    def roster(self, *docs: dict[str, Any]) -> Output:
        return self.feed(*[("roster", d) for d in docs])

    def events(self, *docs: dict[str, Any]) -> Output:
        """Deliver events; the clock first moves up to the latest one's stamp if behind it,
        as events normally arrive when they happen."""
        latest = max((parse_instant(d.get("occurred_at")) or 0.0) for d in docs)
        if latest > self.clock.now():
            self.clock.set(latest)
        return self.feed(*[("event", d) for d in docs])

    def at(self, instant: float) -> Output:
        """Move the clock to ``instant`` and sweep."""
        self.clock.set(instant)
        return self._collect(self.detector.sweep())

    def _collect(self, out: Output) -> Output:
        self.escalations += out.escalations
        self.rejections += out.rejections
        self.last = out
        return out

    def statuses(self) -> list[tuple[str, str]]:
        return [(e["escalation_id"], e["status"]) for e in self.escalations]

    def by_id(self, eid: str, status: str = "open") -> dict[str, Any]:
        found = [e for e in self.escalations if e["escalation_id"] == eid and e["status"] == status]
        assert len(found) == 1, (eid, status, self.statuses())
        return found[0]

    def reasons(self) -> list[str]:
        return [r.reason for r in self.rejections]
