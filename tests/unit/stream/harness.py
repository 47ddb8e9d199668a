"""A detector on a manual clock, fed like the stream feeds it; its changelog as the runtime
writes it, and the whole of its state, for replays to be compared with it."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import orjson
from msgspec.structs import astuple

from stream.clock import ManualClock
from stream.contract import Codec, Rejection, Source
from stream.rules.detector import Output, PartitionDetector
from stream.rules.timers import Timer, TimerKind
from stream.settings import Settings
from stream.state.changelog import encode_delta
from stream.timeutil import parse_instant
from tests.factories import T0

_NEVER = 10 * 365 * 86400.0


class Harness:
    def __init__(self, start: float = T0 - 3600, *, from_bytes: bool = True,
                 cases: bool = False, **settings: Any) -> None:
        self.from_bytes = from_bytes
        self.clock = ManualClock(start)
        if not cases:
            # The tests of the other rules see no case deadline fall due (a breach publishes
            # the escalation again): tests/unit/stream/rules/test_cases.py has them.
            settings = {**{f"case_{s}_sla{p}_s": _NEVER for s in ("owner", "pathway")
                           for p in ("", "_p1")}, **settings}
        self.settings = Settings(**settings)
        self.codec = Codec()
        self.detector = PartitionDetector(0, self.settings, self.clock, self.codec)
        self.escalations: list[dict[str, Any]] = []
        self.rejections: list[Rejection] = []
        # Visit records as ecm.visits carries them, in the order written.
        self.records: list[dict[str, Any]] = []
        self._offsets = itertools.count()
        self.last: Output | None = None

    def source(self, topic: str) -> Source:
        return Source(topic, 0, next(self._offsets), 0)

    def feed(self, *records: tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], Source],
             stamps: list[float] | None = None) -> Output:
        """Records as the router hands them over from a message each: validated straight
        from the bytes where the one-pass checks take them, else as the decoded object.
        ``stamps``: when each reached Kafka (else when it is fed)."""
        batch = []
        for r in records:
            kind, obj = r[0], r[1]
            src = r[2] if len(r) == 3 else self.source(
                {"roster": "ecm.roster", "event": "ecm.events",
                 "prediction": "ecm.work"}.get(kind, "ecm.actions"))
            if self.from_bytes and kind in ("roster", "event"):
                (fast,) = self.codec.records(orjson.dumps(obj), kind == "roster") or (None,)
                obj = obj if fast is None else fast
            batch.append((kind, obj, src))
        return self._collect(self.detector.process(batch, stamps))

    def roster(self, *docs: dict[str, Any]) -> Output:
        return self.feed(*[("roster", d) for d in docs])

    def events(self, *docs: dict[str, Any], stamps: list[float] | None = None) -> Output:
        """Deliver events; the clock first moves up to the latest one's stamp if behind it,
        as events normally arrive when they happen. ``stamps``: when each reached Kafka
        (else when it is delivered)."""
        latest = max((parse_instant(d.get("occurred_at")) or 0.0) for d in docs)
        if latest > self.clock.now():
            self.clock.set(latest)
        return self.feed(*[("event", d) for d in docs], stamps=stamps)

    def predict(self, visit_id: str, arrival: float | None, *, worker_id: str = "w1",
                cause: str | None = "carried_from_previous_visit",
                basis: tuple = ("inside", "v0", 0.0, 300.0, 5.0)) -> Output:
        """A run partition's prediction for a visit, as ecm.work carries it."""
        return self.feed(("prediction", {"visit_id": visit_id, "worker_id": worker_id,
                                         "arrival": arrival, "cause": cause,
                                         "basis": list(basis)}))

    def at(self, instant: float) -> Output:
        """Move the clock to ``instant`` and sweep."""
        self.clock.set(instant)
        return self._collect(self.detector.sweep())

    def _collect(self, out: Output) -> Output:
        # As published: the records' JSON, as the topic's consumers read them.
        self.escalations += [orjson.loads(msgspec.json.encode(e)) for e in out.escalations]
        self.rejections += out.rejections
        self.records += [orjson.loads(msgspec.json.encode(r)) for r in out.visits]
        self.last = out
        return out

    def statuses(self) -> list[tuple[str, str]]:
        return [(e["escalation_id"], e["status"]) for e in self.escalations]

    def by_id(self, eid: str, status: str = "open") -> dict[str, Any]:
        found = [e for e in self.escalations if e["escalation_id"] == eid and e["status"] == status]
        assert len(found) == 1, (eid, status, self.statuses())
        return found[0]

    def record(self, visit_id: str = "v1") -> dict[str, Any]:
        """The visit's last record (the last one wins)."""
        found = [r for r in self.records if r["visit_id"] == visit_id]
        assert found, (visit_id, [r["visit_id"] for r in self.records])
        return found[-1]

    def reasons(self) -> list[str]:
        return [r.reason for r in self.rejections]


class Log:
    """A partition of ecm.state: what the runtime's publish writes, in order."""

    def __init__(self, h: Harness, *, budget: int = 2, max_bytes: int = 900_000) -> None:
        self.h = h
        self.budget = budget
        self.max_bytes = max_bytes
        self.docs: list[dict[str, Any]] = []

    def _write(self, delta: dict[str, Any]) -> int:
        first = len(self.docs)
        for _doc, value in encode_delta(delta, self.max_bytes):
            self.docs.append(orjson.loads(value))  # as a replay reads it
            self.h.detector.checkpointer.wrote(len(value))
        return first

    def publish(self) -> None:
        d = self.h.detector
        # The runtime's order: the batch's escalations are acknowledged first.
        if self.h.escalations:
            d.checkpointer.published(len(self.h.escalations) - 1)
        delta = d.take_delta()
        if delta is not None:
            self._write(delta)
        checkpoint = d.take_checkpoint(self.budget)
        if checkpoint is not None:
            d.checkpointer.slice_written(self._write(checkpoint))

    def replay(self, start: int, swept: bool = True) -> PartitionDetector:
        """A rebuild as stream/worker/recovery.py does it: the escalation topic (the harness's
        records, in the order published) read from where the checkpoint at ``start`` says.
        ``swept``: the original has swept everything due by now, so the copy's first sweep
        must raise nothing."""
        copy = PartitionDetector(0, self.h.settings, ManualClock(self.h.clock.now()), Codec())
        e = self.docs[start].get("e", 0) if start else 0
        copy.restore(self.docs[start:], [orjson.loads(orjson.dumps(r))
                                         for r in self.h.escalations[e:]])
        # A rebuilt partition arms each visit's first timer again: those already past fire
        # at its first sweep, and must raise nothing the original has not raised.
        if swept:
            assert copy.sweep().escalations == []
        return copy


def _live(d: PartitionDetector, timer: Timer) -> bool:
    """Whether a timer entry still stands (superseded entries stay in the heap until due)."""
    if timer.kind == TimerKind.GRACE:
        return timer.key in d.pending
    return timer.key in d.visits and d.attendance.current(d.visits[timer.key], timer)


def partition_state(d: PartitionDetector) -> Any:
    """Everything a partition holds, for comparing a rebuild with the partition."""
    s = d.state
    return ({vid: vs.checkpoint_doc(s.event_index) for vid, vs in s.visits.items()},
            sorted(orjson.dumps(p.to_doc()) for p in s.pending.values()),
            s.event_index, {c: sorted(s.client_visits(c)) for c in s.by_client},
            sorted({astuple(t) for t in d.timers if _live(d, t)}), s.checked_in,
            d.book.records, d.book.open_by_kind, d.book.open_per_visit,
            {c: list(ids) for c, ids in s.waiting.items()})
