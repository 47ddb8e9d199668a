"""How a partition's state is written to ``ecm.state``, and read back.

The detector writes one *delta* per batch per partition: the state of every visit the
batch changed, the ids of visits dropped after their retention, and the changes to the
pending events: those the batch left waiting and the ids of those it matched or expired; a
checkpoint's first slice writes the list whole. A visit's roster record is in the delta of
the batch that brought it and not in later ones: its check-ins, check-outs and events are
always written whole. A visit without its record is written as a row, ``[id, check-ins,
check-outs, event ids, their sources]`` (see :meth:`VisitState.to_doc`), except a visit
whose one change is its first event, a GPS check-in taken by the short path: those are
written as columns (:class:`FirstCheckIns`), each entry replayed as the row it stands for.
Replaying a partition's deltas in order, the last record and the last marks winning per
visit, rebuilds the partition exactly; that is what a worker does when it is assigned the
partition. Every key is named in :mod:`stream.state.keys`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from itertools import chain
from typing import Any

import msgspec

from stream.contract import Source
from stream.state import keys as K
from stream.state.visit import Pending, VisitState

# A changelog document as JSON. The structs it holds (marks, sources, a visit's fields) are
# ``array_like``: written as arrays of their fields, by the encoder itself.
dumps = msgspec.json.Encoder().encode


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
    return {K.FIRST_IDS: ids, K.FIRST_WORKERS: workers, K.FIRST_OCCURRED: occurred,
            K.FIRST_RECEIVED: r, K.FIRST_EVENTS: events, K.FIRST_SOURCES: sources}


def first_rows(doc: Mapping[str, Any]) -> Iterator[list[Any]]:
    """The rows a document's first check-ins (``"fc"``, :class:`FirstCheckIns`) stand for."""
    fc = doc.get(K.FIRSTS)
    if not fc:
        return iter(())
    ids, received = fc[K.FIRST_IDS], fc[K.FIRST_RECEIVED]
    if type(received) is not list:
        received = [received] * len(ids)
    return ([vid, [w, [o, r, e, "gps"]], {}, [e], [s]] for vid, w, o, r, e, s in zip(
        ids, fc[K.FIRST_WORKERS], fc[K.FIRST_OCCURRED], received, fc[K.FIRST_EVENTS],
        fc[K.FIRST_SOURCES], strict=True))


def visit_docs(doc: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """A document's visits as dicts, as a replay and the RocksDB mirror read them: its
    first check-ins (:func:`first_rows`), then its visits, rows as :func:`row_doc` reads
    them."""
    for vdoc in chain(first_rows(doc), doc.get(K.VISITS, ())):
        yield row_doc(vdoc) if type(vdoc) is list else vdoc


def row_doc(row: list[Any]) -> dict[str, Any]:
    """A visit's row (:meth:`VisitState.to_doc`) as the dict of its marks and events."""
    vid, checkins, checkouts, events, sources = row
    return {K.VISIT_ID: vid, K.VISIT_CHECKINS: checkins, K.VISIT_CHECKOUTS: checkouts,
            K.VISIT_EVENTS: dict(zip(events, sources, strict=True))}


# A visit's fields as a checkpoint writes them, in this order: everything but its record,


def delta_doc(partition: int, visits: list[VisitState], deleted: list[str],
              pending: Mapping[str, Pending | None], sources: Mapping[str, Source],
              base: int = 0, base_time: float = 0.0,
              firsts: dict[str, Any] | None = None) -> dict[str, Any]:
    """``pending`` has the waiting events changed: each one added, or None for one
    removed; ``sources`` where each of the visits' events came from; ``base`` is the offset
    of ``ecm.state`` from which a replay rebuilds the partition (its last checkpoint), and
    ``base_time`` when that checkpoint began; ``firsts`` the first check-ins' columns
    (:meth:`FirstCheckIns.take`), none of them at a visit in ``visits``."""
    doc = {K.PARTITION: partition, K.VISITS: [v.to_doc(sources) for v in visits],
           K.DELETED: deleted, K.PENDING: None, K.BASE: base, K.BASE_TIME: base_time}
    if firsts is not None:
        doc[K.FIRSTS] = firsts
    if pending:
        added = [p.to_doc() for p in pending.values() if p is not None]
        removed = [eid for eid, p in pending.items() if p is None]
        if added:
            doc[K.PENDING_ADDED] = added
        if removed:
            doc[K.PENDING_REMOVED] = removed
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
    visits = delta[K.VISITS]
    fc = delta.get(K.FIRSTS)
    firsts = len(fc[K.FIRST_IDS]) if fc else 0
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
    p, deleted, pending = delta[K.PARTITION], delta[K.DELETED], delta[K.PENDING]
    base = {k: delta[k] for k in (K.BASE, K.BASE_TIME) if k in delta}
    # A checkpoint slice's escalation records and topic offset ride in the first document.
    extra = {k: delta[k] for k in (K.ESCALATIONS, K.ESCALATIONS_FROM, K.FAILURES)
             if k in delta}
    # Without its first check-ins, which have documents of their own, a delta's visits may
    # fit in one.
    parts = max(1 if firsts else 2, math.ceil(size / (_FILL * max_bytes)))
    out: list[tuple[dict[str, Any], bytes]] = []

    def visits_doc(items: list[Any]) -> dict[str, Any]:
        return {K.PARTITION: p, K.VISITS: items, K.DELETED: [] if out else deleted,
                K.PENDING: None, **base, **({} if out else extra)}

    _fit(visits_doc, visits, parts, max_bytes, out)
    if not out and (deleted or extra):
        out.append((visits_doc([]), dumps(visits_doc([]))))
    if pending is not None:
        first = len(out)

        def pending_doc(items: list[Any]) -> dict[str, Any]:
            doc: dict[str, Any] = {K.PARTITION: p, K.VISITS: [], K.DELETED: [], K.PENDING: None,
                                   **base}
            doc[K.PENDING_MORE if len(out) > first else K.PENDING] = items
            return doc

        # The pending list is short as a rule: tried whole, halved when too big.
        _halve(pending_doc, pending, max_bytes, out)
    if fc:
        # Cut from their estimated size, each part encoded once, halved if still too big;
        # their visits are in no other document of the delta, so the order does not matter.
        def firsts_doc(lo: int, hi: int) -> dict[str, Any]:
            r = fc[K.FIRST_RECEIVED]
            return {K.PARTITION: p, K.VISITS: [], K.DELETED: [], K.PENDING: None, **base,
                    K.FIRSTS: {k: (v if k == K.FIRST_RECEIVED and type(r) is not list
                                   else v[lo:hi]) for k, v in fc.items()}}

        step = max(1, int(_FILL * max_bytes / _FIRST_BYTES))
        for lo in range(0, firsts, step):
            _halve_range(firsts_doc, lo, min(lo + step, firsts), max_bytes, out)
    for key in (K.PENDING_REMOVED, K.PENDING_ADDED):
        if delta.get(key):
            def changes_doc(items: list[Any], key: str = key) -> dict[str, Any]:
                return {K.PARTITION: p, K.VISITS: [], K.DELETED: [], K.PENDING: None, **base,
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
