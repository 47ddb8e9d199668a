"""What a partition remembers about its visits, and how it is written to ``ecm.state``.

The detector writes one *delta* per batch per partition: the state of every visit the
batch changed, the ids of visits dropped after their retention, and the changes to the
pending events: those the batch left waiting (``"pa"``) and the ids of those it matched or
expired (``"pr"``); a checkpoint's first slice writes the list whole (``"pending"``). A
visit's roster record (``"v"``, or its validated fields ``"s"``) is in the delta of the
batch that brought it and not in later ones: its check-ins, check-outs and events
(``"ci"``, ``"co"``, ``"ev"``) are always written whole. A visit without its record
is written as a row, ``[id, check-ins, check-outs, event ids, their sources]`` (see
:meth:`VisitState.to_doc`), except a visit whose one change is its first event, a GPS
check-in taken by the detector's short path: those are written as columns (``"fc"``,
:class:`FirstCheckIns`), each entry replayed as the row it stands for. Replaying a
partition's deltas in order, the last record and the last marks winning per visit,
rebuilds the partition exactly; that is what a worker does when it is assigned the
partition.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from sys import intern
from typing import Any

import msgspec

from stream.contract import (
    Event,
    Source,
    Visit,
    interned_workers,
    raw_object,
    validate_event,
    validate_visit,
)

# A struct's fields as a tuple, in their order, in one C call: what ``as_list`` returns, as
# orjson writes it.
_astuple = msgspec.structs.astuple


# A changelog document as JSON. The structs it holds (marks, sources) are ``array_like``:
# written as arrays of their fields, by the encoder itself.
dumps = msgspec.json.Encoder().encode


class Mark(msgspec.Struct, gc=False, array_like=True):
    """One worker's check-in or check-out as it was accepted."""

    occurred: float  # device time
    received: float  # worker clock when it was processed
    event_id: str
    method: str

    def as_list(self) -> list[Any]:
        return [self.occurred, self.received, self.event_id, self.method]

    @classmethod
    def from_list(cls, v: list[Any]) -> Mark:
        return cls(float(v[0]), float(v[1]), str(v[2]), str(v[3]))


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

    def add_event(self, event_id: str) -> None:
        self.events += (event_id,)

    def check_in(self, worker_id: str, mark: Mark) -> None:
        self.checkins = _with(self.checkins, worker_id, mark)

    def check_out(self, worker_id: str, mark: Mark) -> None:
        self.checkouts = _with(self.checkouts, worker_id, mark)

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
            doc["v"] = raw
        else:  # decoded from the message's bytes (fast_records): no object to write
            # The struct itself: dumps writes its fields, its record (None from here) last.
            doc["s"] = self.visit
        self.visit.raw = None
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> VisitState | None:
        """A visit from a delta that carries its roster record (``"v"``) or a checkpoint's
        fields (``"s"``), or None if the record is not valid (any more)."""
        if "s" in doc:
            visit: Visit | tuple[str, str] = visit_from_fields(doc["s"])
        else:
            visit = validate_visit(doc["v"])
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
        doc["s"] = visit_fields(self.visit)
        return doc

    def _marks_doc(self, sources: Mapping[str, Source]) -> dict[str, Any]:
        """Its marks and events; kinds it has none of are left out (a replay reads an
        absent kind as none), so a visit not yet attended is written as its id."""
        doc: dict[str, Any] = {"id": self.visit.visit_id}
        if self.checkins is not _UNSET:
            doc["ci"] = _marks_as_doc(self.checkins)
        if self.checkouts is not _UNSET:
            doc["co"] = _marks_as_doc(self.checkouts)
        events = self.events
        if len(events) == 1:  # as a rule: one check-in, its check-out not yet in
            eid = events[0]
            doc["ev"] = {eid: _astuple(sources[eid])}
        elif events:
            doc["ev"] = {eid: _astuple(sources[eid]) for eid in events}
        return doc

    def load_marks(self, doc: dict[str, Any]) -> None:
        """Check-ins, check-outs and events from a delta, replacing the ones held."""
        self.checkins = _marks(doc.get("ci", {}))
        self.checkouts = _marks(doc.get("co", {}))
        self.events = tuple(doc.get("ev", ()))


class FirstCheckIns:
    """The visits whose only change since the last delta is their first event, a check-in
    by GPS taken by the detector's short path: written as columns (a delta's ``"fc"``),
    not a row each. Entry ``i`` stands for the row ``[ids[i], [workers[i], [occurred[i],
    received[i], events[i], "gps"]], {}, [events[i]], [sources[i]]]`` (:func:`first_rows`):
    a visit's marks and events as a row writes them, and replayed as that row is."""

    __slots__ = ("events", "ids", "occurred", "received", "sources", "workers")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.workers: list[str] = []
        self.occurred: list[float] = []
        self.received: list[float] = []
        self.events: list[str] = []
        self.sources: list[Source] = []

    def take(self, changed: Mapping[str, Any], deleted: list[str]) -> dict[str, Any] | None:
        """The columns for a delta, and empty again. An entry whose visit changed again
        since (its row in the delta has all of it) or was forgotten is left out."""
        if not self.ids:
            return None
        cols = (self.ids, self.workers, self.occurred, self.received, self.events,
                self.sources)
        self.__init__()  # type: ignore[misc]
        if changed or deleted:
            gone = set(deleted)
            keep = [i for i, vid in enumerate(cols[0]) if vid not in changed and vid not in gone]
            if len(keep) < len(cols[0]):
                if not keep:
                    return None
                cols = tuple([c[i] for i in keep] for c in cols)  # type: ignore[assignment]
        return _fc_doc(*cols)


def _fc_doc(ids: list[str], workers: list[str], occurred: list[float], received: list[float],
            events: list[str], sources: list[Any]) -> dict[str, Any]:
    # A batch's check-ins are received at one instant as a rule: written once.
    r: float | list[float] = received[0] if min(received) == max(received) else received
    return {"id": ids, "w": workers, "o": occurred, "r": r, "e": events, "s": sources}


def first_rows(doc: Mapping[str, Any]) -> Iterator[list[Any]]:
    """The rows a document's first check-ins (``"fc"``, :class:`FirstCheckIns`) stand for."""
    fc = doc.get("fc")
    if not fc:
        return iter(())
    ids, received = fc["id"], fc["r"]
    if type(received) is not list:
        received = [received] * len(ids)
    return ([vid, [w, [o, r, e, "gps"]], {}, [e], [s]] for vid, w, o, r, e, s in zip(
        ids, fc["w"], fc["o"], received, fc["e"], fc["s"], strict=True))


def visit_docs(doc: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """A document's visits as dicts, as a replay and the RocksDB mirror read them: its
    first check-ins (:func:`first_rows`), then its visits, rows as :func:`row_doc` reads
    them."""
    for vdoc in chain(first_rows(doc), doc.get("visits", ())):
        yield row_doc(vdoc) if type(vdoc) is list else vdoc


def row_doc(row: list[Any]) -> dict[str, Any]:
    """A visit's row (:meth:`VisitState.to_doc`) as the dict of its marks and events."""
    vid, checkins, checkouts, events, sources = row
    return {"id": vid, "ci": checkins, "co": checkouts, "ev": dict(zip(events, sources,
                                                                       strict=True))}


# A visit's fields as a checkpoint writes them, in this order: everything but its record,
# which is the last.
_VISIT_FIELDS = Visit.__struct_fields__[:-1]
assert Visit.__struct_fields__[-1] == "raw"


def visit_fields(visit: Visit) -> tuple[Any, ...]:
    """The visit as a checkpoint writes it: its fields as the worker holds them, already
    validated, so that a replay rebuilds it exactly (floats round-trip through JSON) without
    the roster record it was validated from, which a tracked visit does not keep."""
    return _astuple(visit)[:-1]  # a tuple: written as a JSON array


def visit_from_fields(values: list[Any]) -> Visit:
    """The inverse of :func:`visit_fields`, from its JSON form, or from a delta's: the
    Visit written whole, its record (null) last."""
    if len(values) == len(_VISIT_FIELDS) + 1 and values[-1] is None:
        values = values[:-1]
    kw = dict(zip(_VISIT_FIELDS, values, strict=True))
    kw["worker_ids"] = interned_workers(kw["worker_ids"])
    if kw["polygon"] is not None:
        kw["polygon"] = tuple(tuple(tuple(p) for p in ring) for ring in kw["polygon"])
    kw["client_phones"] = tuple(kw["client_phones"])
    kw["nfc_tags"] = tuple(kw["nfc_tags"])
    return Visit(**kw, raw=None)


@dataclass(slots=True)
class Pending:
    """An event waiting, for a grace period, for a roster record that may still come."""

    event: Event
    source: Source
    received: float
    expires: float

    def to_doc(self) -> dict[str, Any]:
        """As a delta, or a checkpoint's list, writes it. An event validated from its
        message's bytes keeps its object once decoded, for the checkpoints that write it
        again."""
        raw = self.event.raw
        if type(raw) is tuple:
            raw = self.event.raw = raw_object(raw)
        return {"e": raw, "s": self.source.as_list(), "r": self.received, "x": self.expires}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Pending | None:
        event = validate_event(doc["e"])
        if not isinstance(event, Event):
            return None
        return cls(event, Source.from_list(doc["s"]), float(doc["r"]), float(doc["x"]))


def delta_doc(partition: int, visits: list[VisitState], deleted: list[str],
              pending: Mapping[str, Pending | None], sources: Mapping[str, Source],
              base: int = 0, base_time: float = 0.0,
              firsts: dict[str, Any] | None = None) -> dict[str, Any]:
    """``pending`` has the waiting events changed: each one added, or None for one
    removed; ``sources`` where each of the visits' events came from; ``base`` is the offset
    of ``ecm.state`` from which a replay rebuilds the partition (its last checkpoint), and
    ``base_time`` when that checkpoint began; ``firsts`` the first check-ins' columns
    (:meth:`FirstCheckIns.take`), none of them at a visit in ``visits``."""
    doc = {"p": partition, "visits": [v.to_doc(sources) for v in visits], "deleted": deleted,
           "pending": None, "b": base, "bt": base_time}
    if firsts is not None:
        doc["fc"] = firsts
    if pending:
        added = [p.to_doc() for p in pending.values() if p is not None]
        removed = [eid for eid, p in pending.items() if p is None]
        if added:
            doc["pa"] = added
        if removed:
            doc["pr"] = removed
    return doc


def encode_delta(delta: dict[str, Any], max_bytes: int) -> list[tuple[dict[str, Any], bytes]]:
    """One delta as one or more documents with their encodings, each below ``max_bytes``
    where its records allow (a record bigger than that gets a document of its own).

    A delta that fits is encoded once. A bigger one has its visits cut into parts from its
    encoded size (estimated from a sample when it has many visits) and each part encoded
    once; a part that is still too big, because its records are larger than the average,
    is halved. Replayed in order the documents rebuild the same state: deletions ride in
    the first document, visits are last-write-wins, a whole pending list is replaced by the
    first pending document and extended by the rest (``pending_more``), and a delta's
    changes to it (``pa``, ``pr``: an event id is in one of them at most) and its first
    check-ins (``fc``) are cut into documents of their own. Every document carries the
    delta's ``b`` and ``bt``.
    """
    visits = delta["visits"]
    fc = delta.get("fc")
    firsts = len(fc["id"]) if fc else 0
    size = 0.0
    if len(visits) > _SAMPLE:
        # A roster batch's delta is megabytes: its size is estimated from a sample of its
        # visits, so that it is not encoded whole only to be cut up and encoded again.
        size = len(dumps(visits[:_SAMPLE])) * len(visits) / _SAMPLE
    if size + firsts * _FIRST_BYTES < max_bytes / 2:
        whole = dumps(delta)
        if len(whole) <= max_bytes:
            return [(delta, whole)]
        if not firsts:
            size = len(whole)
    if firsts and len(visits) <= _SAMPLE:
        # The visits alone, as a rule a few beside the first check-ins, which have
        # documents of their own: measured only once the delta is to be cut.
        size = len(dumps(visits))
    p, deleted, pending = delta["p"], delta["deleted"], delta["pending"]
    base = {k: delta[k] for k in ("b", "bt") if k in delta}
    # A checkpoint slice's escalation records and topic offset ride in the first document.
    extra = {k: delta[k] for k in ("esc", "e") if k in delta}
    # Without its first check-ins, which have documents of their own, a delta's visits may
    # fit in one.
    parts = max(1 if firsts else 2, math.ceil(size / (_FILL * max_bytes)))
    out: list[tuple[dict[str, Any], bytes]] = []

    def visits_doc(items: list[Any]) -> dict[str, Any]:
        return {"p": p, "visits": items, "deleted": [] if out else deleted, "pending": None,
                **base, **({} if out else extra)}

    _fit(visits_doc, visits, parts, max_bytes, out)
    if not out and (deleted or extra):
        out.append((visits_doc([]), dumps(visits_doc([]))))
    if pending is not None:
        first = len(out)

        def pending_doc(items: list[Any]) -> dict[str, Any]:
            doc: dict[str, Any] = {"p": p, "visits": [], "deleted": [], "pending": None,
                                   **base}
            doc["pending_more" if len(out) > first else "pending"] = items
            return doc

        # The pending list is short as a rule: tried whole, halved when too big.
        _halve(pending_doc, pending, max_bytes, out)
    if fc:
        # Cut from their estimated size, each part encoded once, halved if still too big;
        # their visits are in no other document of the delta, so the order does not matter.
        def firsts_doc(lo: int, hi: int) -> dict[str, Any]:
            r = fc["r"]
            return {"p": p, "visits": [], "deleted": [], "pending": None, **base, "fc": {
                "id": fc["id"][lo:hi], "w": fc["w"][lo:hi], "o": fc["o"][lo:hi],
                "r": r[lo:hi] if type(r) is list else r, "e": fc["e"][lo:hi],
                "s": fc["s"][lo:hi]}}

        step = max(1, int(_FILL * max_bytes / _FIRST_BYTES))
        for lo in range(0, firsts, step):
            _halve_range(firsts_doc, lo, min(lo + step, firsts), max_bytes, out)
    for key in ("pr", "pa"):
        if delta.get(key):
            def changes_doc(items: list[Any], key: str = key) -> dict[str, Any]:
                return {"p": p, "visits": [], "deleted": [], "pending": None, **base,
                        key: items}

            _halve(changes_doc, delta[key], max_bytes, out)
    return out


_FILL = 0.8  # parts are cut to this share of the limit, for records of uneven size
# About what a first check-in takes in the columns: 68 bytes with the pipeline benchmark's
# ids, more with longer ones (a part still too big is halved).
_FIRST_BYTES = 100
_SAMPLE = 256  # visits encoded to estimate the size of a delta with more than this


def _fit(make: Callable[[list[Any]], dict[str, Any]], items: list[Any], parts: int,
         max_bytes: int, out: list[tuple[dict[str, Any], bytes]]) -> None:
    step = max(1, math.ceil(len(items) / parts))
    for k in range(0, len(items), step):
        _halve(make, items[k:k + step], max_bytes, out)


def _halve_range(make: Callable[[int, int], dict[str, Any]], lo: int, hi: int, max_bytes: int,
                 out: list[tuple[dict[str, Any], bytes]]) -> None:
    """:func:`_halve` for a document made from the entries ``lo`` to ``hi`` of columns."""
    doc = make(lo, hi)
    value = dumps(doc)
    if len(value) <= max_bytes or hi - lo <= 1:
        out.append((doc, value))
        return
    mid = (lo + hi) // 2
    _halve_range(make, lo, mid, max_bytes, out)
    _halve_range(make, mid, hi, max_bytes, out)


def _halve(make: Callable[[list[Any]], dict[str, Any]], items: list[Any], max_bytes: int,
           out: list[tuple[dict[str, Any], bytes]]) -> None:
    """The document of ``items``, or, while it is too big, of each half of them."""
    _halve_range(lambda lo, hi: make(items[lo:hi]), 0, len(items), max_bytes, out)
