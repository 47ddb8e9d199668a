"""What a partition remembers of a visit: its roster record, each worker's check-in and
check-out as accepted, and its events; and an event waiting for its roster record. How
they are written to ``ecm.state`` is :mod:`stream.state.changelog`; the keys are
:mod:`stream.state.keys`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from sys import intern
from typing import Any, ClassVar

import msgspec

from stream.contract import Codec, Event, Source, Visit
from stream.contract.bounds import Bounds
from stream.contract.records import WorkerIds
from stream.state import keys as K

# A struct's fields as a tuple, in their order, in one C call: what ``as_list`` returns, as
# the changelog's encoder writes it.
_astuple = msgspec.structs.astuple


class Mark(msgspec.Struct, gc=False, array_like=True):
    """One worker's check-in or check-out as it was accepted."""

    occurred: float  # device time
    received: float  # when it reached Kafka, on the worker clock (Event.received)
    event_id: str
    method: str
    # Whether the event named its visit (:class:`NearestMark` for one that did not).
    named: ClassVar[bool] = True

    def as_list(self) -> list[Any]:
        return [self.occurred, self.received, self.event_id, self.method]

    @classmethod
    def from_list(cls, v: list[Any]) -> Mark:
        if len(v) > 4:
            return NearestMark(float(v[0]), float(v[1]), str(v[2]), str(v[3]))
        return Mark(float(v[0]), float(v[1]), str(v[2]), str(v[3]))


class NearestMark(Mark):
    """A check-in that named no visit, matched by nearness (stream/rules/matching.py): a
    check-out naming another of the client's visits may take it back. A subclass rather
    than a flag, so that the common mark is written as ever and this one with a fifth
    element."""

    nearest: bool = True
    named: ClassVar[bool] = False

    def as_list(self) -> list[Any]:
        return [self.occurred, self.received, self.event_id, self.method, True]


class _Unset(dict):  # type: ignore[type-arg]
    """The one empty mapping shared by every visit that has not had that kind of mark yet:
    two empty dicts per visit would be a sixth of a tracked visit's memory. Writes go
    through :class:`VisitState`'s methods, which give the visit its own marks first;
    writing here is a bug, and raises."""

    __slots__ = ()

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError("write through VisitState.check_in / check_out")


_UNSET: Any = _Unset()


class _OneMark(msgspec.Struct, gc=False, array_like=True):
    """The marks of a visit that one worker has made (the common case), read as a dict of
    one: 32 bytes where a dict of one costs 184, and not tracked by the collector (see
    :class:`stream.contract.Source`). A second worker's mark turns it into a dict
    (:func:`_with`); it is never written in place."""

    worker: str
    mark: Mark

    def __len__(self) -> int:
        return 1

    def __contains__(self, worker: object) -> bool:
        return worker == self.worker

    def __getitem__(self, worker: str) -> Mark:
        if worker == self.worker:
            return self.mark
        raise KeyError(worker)

    def get(self, worker: str, default: Mark | None = None) -> Mark | None:
        return self.mark if worker == self.worker else default

    def __iter__(self) -> Iterator[str]:
        return iter((self.worker,))

    def keys(self) -> tuple[str]:
        return (self.worker,)

    def values(self) -> tuple[Mark]:
        return (self.mark,)

    def items(self) -> tuple[tuple[str, Mark]]:
        return ((self.worker, self.mark),)


def _with(marks: Any, worker: str, mark: Mark) -> Any:
    """``marks`` with ``worker``'s mark set: the shared empty mapping, one mark, or a dict."""
    if marks is _UNSET:
        return _OneMark(worker, mark)
    if type(marks) is _OneMark:
        if marks.worker == worker:
            return _OneMark(worker, mark)
        return {marks.worker: marks.mark, worker: mark}
    marks[worker] = mark
    return marks


def _marks_as_doc(marks: Any) -> dict[str, tuple[Any, ...]]:
    """Marks as a delta writes them: worker id -> ``Mark.as_list()``, as a tuple (written as
    the same JSON array, and built in one C call)."""
    if type(marks) is _OneMark:
        return {marks.worker: _astuple(marks.mark)}
    return {w: _astuple(m) for w, m in marks.items()}


def _marks(doc: dict[str, list[Any]] | list[Any]) -> Any:
    """Marks from their JSON: ``{worker: mark}``, or one worker's ``[worker, mark]`` (a
    :class:`_OneMark`, as a row writes it)."""
    if type(doc) is list:
        worker, m = doc
        return _OneMark(intern(worker), Mark.from_list(m))
    marks: Any = _UNSET
    for worker, m in doc.items():
        marks = _with(marks, worker, Mark.from_list(m))
    return marks




class VisitState(msgspec.Struct, gc=False):
    visit: Visit
    # Read as dicts of worker id -> Mark: the shared empty mapping, then one mark, then a
    # dict once a second worker has one.
    checkins: dict[str, Mark] = msgspec.field(default_factory=lambda: _UNSET)
    checkouts: dict[str, Mark] = msgspec.field(default_factory=lambda: _UNSET)
    # The ids of every event applied to the visit. Where each came from is in the
    # detector's event index (a replay of the same source position is told apart from a
    # true duplicate by it), and is written with the visit: a tuple of one or two ids
    # costs 130 bytes less than a dict of them.
    events: tuple[str, ...] = ()
    # When its cancellation reached Kafka (0: not cancelled, or cancelled before a
    # rebuild, which does not keep it): deadlines before it still stand.
    cancelled_at: float = 0.0
    # When its workers or its start last changed and which ("reassigned", "moved"), as
    # its cancellation: for the cause of a late or missed (stream/rules/causes.py).
    changed_at: float = 0.0
    change: str = ""
    # Per rostered worker, the latest prediction of their run (stream/rules/at_risk.py):
    # not written to the changelog, since run partitions send each again within
    # a refresh interval.
    predictions: dict[str, Any] | None = None

    def add_event(self, event_id: str) -> None:
        self.events += (event_id,)

    def check_in(self, worker_id: str, mark: Mark) -> None:
        self.checkins = _with(self.checkins, worker_id, mark)

    def check_out(self, worker_id: str, mark: Mark) -> None:
        self.checkouts = _with(self.checkouts, worker_id, mark)

    def take_check_in(self, worker_id: str) -> Mark:
        """Remove a worker's check-in, and its event, from the visit: it was another's."""
        marks = self.checkins
        mark = marks[worker_id]
        if type(marks) is _OneMark:
            self.checkins = _UNSET
        else:
            rest: Any = _UNSET
            for w, m in marks.items():
                if w != worker_id:
                    rest = _with(rest, w, m)
            self.checkins = rest
        self.events = tuple(e for e in self.events if e != mark.event_id)
        return mark

    def arrival(self) -> float | None:
        """When the visit was attended: the instant the last required worker checked in.

        A double-up needs two distinct workers; a replacement worker counts (the wrong-worker
        rule questions who came, not whether somebody did).
        """
        marks = self.checkins
        need = len(self.visit.worker_ids)
        if type(marks) is _OneMark:  # the common case: one worker, one check-in
            return marks.mark.occurred if need == 1 else None
        have = len(marks)
        if have < need:
            return None
        if need == 1:
            return min(m.occurred for m in self.checkins.values())
        return sorted(m.occurred for m in self.checkins.values())[need - 1]

    def to_doc(self, sources: Mapping[str, Source]) -> dict[str, Any] | list[Any]:
        """The visit for a delta, with where its events came from (``sources``). The roster
        record rides along while the visit still holds it, that is in the first delta after
        it arrived: as its decoded object (``"v"``), or, for a record validated straight from
        the message's bytes, as the fields the worker keeps (``"s"``, as a checkpoint writes
        it). Writing the delta releases it, so a tracked visit keeps no copy of its record
        (a million are held at once).

        A visit without its record, as a rule one a check-in changed, is a row instead:
        ``[id, check-ins, check-outs, event ids, their sources]``, the marks as held (a
        worker's one mark is written ``[worker, mark]``, none ``{}``, more a dict), for
        :func:`dumps` to write; a third of the cost of the dicts of :meth:`_marks_doc`."""
        raw = self.visit.raw
        if raw is None:
            events = self.events
            checkins, checkouts = self.checkins, self.checkouts
            # Several workers' marks are a dict written in place: the row takes a copy.
            return [self.visit.visit_id,
                    dict(checkins) if type(checkins) is dict else checkins,
                    dict(checkouts) if type(checkouts) is dict else checkouts,
                    events, [sources[events[0]]] if len(events) == 1
                    else [sources[e] for e in events]]
        doc = self._marks_doc(sources)
        if type(raw) is dict:
            doc[K.VISIT_RECORD] = raw
        else:  # decoded from the message's bytes (the one-pass decoder): no object to write
            # The struct itself: dumps writes its fields, its record (None from here) last.
            doc[K.VISIT_FIELDS] = self.visit
        self.visit.raw = None
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any], codec: Codec) -> VisitState | None:
        """A visit from a delta that carries its roster record (``"v"``) or a checkpoint's
        fields (``"s"``), or None if the record is not valid (any more)."""
        if K.VISIT_FIELDS in doc:
            visit: Visit | tuple[str, str] = visit_from_fields(
                doc[K.VISIT_FIELDS], codec.workers, codec.bounds)
        else:
            visit = codec.visit(doc[K.VISIT_RECORD])
        if not isinstance(visit, Visit):
            return None
        visit.raw = None  # it is in the changelog already
        state = cls(visit)
        state.load_marks(doc)
        return state

    def checkpoint_doc(self, sources: Mapping[str, Source]) -> dict[str, Any]:
        """The visit whole, for a checkpoint: its marks and events, and its record as the
        fields the worker keeps (``"s"``, :func:`visit_fields`). Unlike :meth:`to_doc` it
        leaves a record the visit still holds for the delta that writes it."""
        doc = self._marks_doc(sources)
        doc[K.VISIT_FIELDS] = visit_fields(self.visit)
        return doc

    def _marks_doc(self, sources: Mapping[str, Source]) -> dict[str, Any]:
        """Its marks and events; kinds it has none of are left out (a replay reads an
        absent kind as none), so a visit not yet attended is written as its id."""
        doc: dict[str, Any] = {K.VISIT_ID: self.visit.visit_id}
        if self.checkins is not _UNSET:
            doc[K.VISIT_CHECKINS] = _marks_as_doc(self.checkins)
        if self.checkouts is not _UNSET:
            doc[K.VISIT_CHECKOUTS] = _marks_as_doc(self.checkouts)
        events = self.events
        if len(events) == 1:  # as a rule: one check-in, its check-out not yet in
            eid = events[0]
            doc[K.VISIT_EVENTS] = {eid: _astuple(sources[eid])}
        elif events:
            doc[K.VISIT_EVENTS] = {eid: _astuple(sources[eid]) for eid in events}
        return doc

    def load_marks(self, doc: dict[str, Any]) -> None:
        """Check-ins, check-outs and events from a delta, replacing the ones held."""
        self.checkins = _marks(doc.get(K.VISIT_CHECKINS, {}))
        self.checkouts = _marks(doc.get(K.VISIT_CHECKOUTS, {}))
        self.events = tuple(doc.get(K.VISIT_EVENTS, ()))



_VISIT_FIELDS = Visit.__struct_fields__[:-1]
assert Visit.__struct_fields__[-1] == "raw"


def visit_fields(visit: Visit) -> tuple[Any, ...]:
    """The visit as a checkpoint writes it: its fields as the worker holds them, already
    validated, so that a replay rebuilds it exactly (floats round-trip through JSON) without
    the roster record it was validated from, which a tracked visit does not keep."""
    return _astuple(visit)[:-1]  # a tuple: written as a JSON array


def visit_from_fields(values: list[Any], workers: WorkerIds,
                      bounds: Bounds | None = None) -> Visit:
    """The inverse of :func:`visit_fields`, from its JSON form, or from a delta's: the
    Visit written whole, its record (null) last."""
    if len(values) == len(_VISIT_FIELDS) + 1 and values[-1] is None:
        values = values[:-1]
    kw = dict(zip(_VISIT_FIELDS, values, strict=True))
    kw["worker_ids"] = workers(kw["worker_ids"])
    if kw["polygon"] is not None:
        kw["polygon"] = tuple(tuple(tuple(p) for p in ring) for ring in kw["polygon"])
    kw["client_phones"] = tuple(kw["client_phones"])
    kw["nfc_tags"] = tuple(kw["nfc_tags"])
    visit = Visit(**kw, raw=None)
    if bounds is not None and not (bounds.instant_in_range(float(visit.start))
                                   and bounds.instant_in_range(float(visit.end))):
        raise ValueError("its instants are outside the years the contract accepts")
    return visit



@dataclass(slots=True)
class Pending:
    """An event waiting, for a grace period, for a roster record that may still come."""

    event: Event
    source: Source
    received: float
    expires: float

    def to_doc(self) -> dict[str, Any]:
        """As a delta, or a checkpoint's list, writes it. The event's object was decoded
        when it began to wait (stream/rules/matching.py)."""
        return {K.PENDING_EVENT: self.event.raw, K.PENDING_SOURCE: self.source.as_list(),
                K.PENDING_RECEIVED: self.received, K.PENDING_EXPIRES: self.expires}

    @classmethod
    def from_doc(cls, doc: dict[str, Any], codec: Codec) -> Pending | None:
        event = codec.event(doc[K.PENDING_EVENT])
        if not isinstance(event, Event):
            return None
        received = float(doc[K.PENDING_RECEIVED])
        event.received = received
        return cls(event, Source.from_list(doc[K.PENDING_SOURCE]), received,
                   float(doc[K.PENDING_EXPIRES]))

