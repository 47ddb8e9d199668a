"""What one partition holds, and what changed in it since its last delta.

The visits, indexed by client; where each event applied came from (a replay of the same
source position is told apart from a true duplicate by it); the events waiting for a roster
record, indexed by client; and the changes since the last delta, which
:meth:`PartitionState.take_delta` turns into one changelog document. The rules
(stream/rules/) decide what changes; this module only holds it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from stream.contract import Codec, Source
from stream.state import keys as K
from stream.state.changelog import FirstCheckIns, delta_doc, visit_docs
from stream.state.visit import Pending, VisitState


class PartitionState:
    __slots__ = ("by_client", "checked_in", "deleted", "dirty", "event_index", "failures",
                 "failures_changed", "firsts", "partition", "pending", "pending_changed",
                 "visits", "waiting")

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.visits: dict[str, VisitState] = {}
        self.checked_in = 0  # visits with at least one check-in, kept for the gauge
        # A client's visit ids, in booking order (read through client_visits): the id
        # itself while the client has one, then a tuple. A client has a few visits a day;
        # a tuple of one would cost 56 bytes, and a walk by the collector when a roster
        # batch settles (a tuple is tracked until a collection walks it).
        self.by_client: dict[str, str | tuple[str, ...]] = {}
        self.pending: dict[str, Pending] = {}
        # The ids of the events waiting for each client's roster, in the order they began
        # to wait: a roster batch retries its clients' events, not every event waiting.
        self.waiting: dict[str, dict[str, None]] = {}
        self.event_index: dict[str, Source] = {}
        # The visits changed since the last delta, in the order they changed.
        self.dirty: dict[str, VisitState] = {}
        # The visits whose one change since then is their first event, a check-in taken
        # by the short path, as the delta's columns, in the order changed.
        self.firsts = FirstCheckIns()
        self.deleted: list[str] = []
        # Waiting events changed since the last delta: the event, or None once removed.
        self.pending_changed: dict[str, Pending | None] = {}
        # Per client, the late and missed visits counted toward a safeguarding review
        # (stream/rules/safeguarding.py), and the clients whose list changed since the
        # last delta.
        self.failures: dict[str, list[list[Any]]] = {}
        self.failures_changed: set[str] = set()

    # ---- visits --------------------------------------------------------------------------

    def book(self, vs: VisitState) -> None:
        """Hold a visit seen for the first time."""
        vid = vs.visit.visit_id
        self.visits[vid] = vs
        self._index(vs.visit.client_id, vid)

    def client_visits(self, client_id: str) -> tuple[str, ...]:
        """The client's visit ids, in booking order."""
        ids = self.by_client.get(client_id, ())
        return (ids,) if type(ids) is str else ids

    def _index(self, client_id: str, vid: str) -> None:
        held = self.by_client.get(client_id)
        if held is None:
            self.by_client[client_id] = vid
        elif type(held) is str:
            self.by_client[client_id] = (held, vid)
        else:
            # Concatenated, not unpacked: twice as fast.
            self.by_client[client_id] = held + (vid,)  # noqa: RUF005

    def _unindex(self, client_id: str, vid: str) -> None:
        ids = self.client_visits(client_id)
        if vid in ids:
            rest = tuple(i for i in ids if i != vid)
            if len(rest) > 1:
                self.by_client[client_id] = rest
            elif rest:
                self.by_client[client_id] = rest[0]
            else:
                del self.by_client[client_id]

    def forget(self, vid: str) -> None:
        """Drop a visit past its retention, with its events."""
        vs = self.visits.pop(vid)
        self.checked_in -= bool(vs.checkins)
        self._unindex(vs.visit.client_id, vid)
        for eid in vs.events:
            self.event_index.pop(eid, None)
        self.dirty.pop(vid, None)
        self.deleted.append(vid)

    # ---- events waiting for their roster ------------------------------------------------

    def wait(self, p: Pending, *, changed: bool = True) -> None:
        """Hold an event until its roster comes or its grace runs out; ``changed`` unless
        the changelog has it already (a retry that still found no roster, a restore)."""
        eid = p.event.event_id
        self.pending[eid] = p
        self.waiting.setdefault(p.event.client_id, {})[eid] = None
        if changed:
            self.pending_changed[eid] = p

    def waiting_for(self, clients: Iterable[str]) -> list[Pending]:
        """Take the events waiting for these clients' rosters, in the order they began to
        wait; each is held again (:meth:`wait`) or settled (:meth:`settled`)."""
        taken = []
        for client in clients:
            for eid in self.waiting.pop(client, ()):
                taken.append(self.pending.pop(eid))
        return taken

    def settled(self, event_id: str) -> None:
        """A waiting event taken by :meth:`waiting_for` was matched or rejected."""
        self.pending_changed[event_id] = None

    def expire(self, event_id: str) -> Pending | None:
        """Stop holding a waiting event whose grace ran out (None if it is gone)."""
        p = self.pending.pop(event_id, None)
        if p is None:
            return None
        self.pending_changed[event_id] = None
        waiting = self.waiting[p.event.client_id]
        del waiting[event_id]
        if not waiting:
            del self.waiting[p.event.client_id]
        return p

    # ---- the changelog -------------------------------------------------------------------

    def take_delta(self, base: int, base_time: float, *, force: bool = False
                   ) -> dict[str, Any] | None:
        """The state changed since the last call, as one changelog document, or None when
        nothing changed and not ``force``."""
        if (not force and not self.dirty and not self.deleted and not self.pending_changed
                and not self.firsts.ids and not self.failures_changed):
            return None
        doc = delta_doc(self.partition, list(self.dirty.values()), self.deleted,
                        self.pending_changed, self.event_index, base, base_time,
                        self.firsts.take(self.dirty, self.deleted))
        if self.failures_changed:
            doc[K.FAILURES] = self.failures_doc(self.failures_changed)
            self.failures_changed = set()
        self.dirty.clear()
        self.deleted = []
        self.pending_changed = {}
        return doc

    def failures_doc(self, clients: Iterable[str]) -> dict[str, list[list[Any]]]:
        """The clients' failure lists as a document writes them (a copy: [] for none)."""
        return {c: [list(f) for f in self.failures.get(c, ())] for c in clients}

    def load(self, docs: Iterable[Any], codec: Codec,
             skip: Callable[[int, str], None]) -> list[Any]:
        """Rebuild from changelog documents, oldest first; the escalation records the
        checkpoint slices among them carry, in order.

        Whatever in a document cannot be read back (written by an older version, or
        corrupted) is skipped, and ``skip`` is told the document's position in ``docs`` and
        why: one bad record must never stop a partition from loading, at every restart."""
        sources: dict[str, Any] = {}  # where every event replayed came from
        checkpointed: list[Any] = []
        for i, doc in enumerate(docs):
            if type(doc) is not dict:
                skip(i, f"a changelog document is {type(doc).__name__}, not an object")
                continue
            try:
                vdocs = list(visit_docs(doc))
                checkpointed += doc.get(K.ESCALATIONS) or ()
            except POISON as exc:
                skip(i, f"unreadable visits ({type(exc).__name__})")
                vdocs = []
            for vdoc in vdocs:
                try:
                    self._load_visit(vdoc, codec, sources)
                except POISON as exc:
                    skip(i, f"an unreadable visit ({type(exc).__name__})")
            try:
                for vid in doc.get(K.DELETED) or ():
                    vs = self.visits.pop(vid, None)
                    if vs is not None:
                        self._unindex(vs.visit.client_id, vid)
                # The list whole (a checkpoint's first slice, or a changelog from before
                # the changes), then a delta's changes (an id is in one of them at most).
                if doc.get(K.PENDING) is not None:
                    self.pending = {}
                for eid in doc.get(K.PENDING_REMOVED) or ():
                    self.pending.pop(eid, None)
            except POISON as exc:
                skip(i, f"unreadable deletions ({type(exc).__name__})")
            try:
                for client, failures in (doc.get(K.FAILURES) or {}).items():
                    if failures:
                        self.failures[client] = [
                            [float(f[0]), str(f[1]), str(f[2]), str(f[3])] for f in failures]
                    else:
                        self.failures.pop(client, None)
            except POISON as exc:
                skip(i, f"unreadable safeguarding counts ({type(exc).__name__})")
            for key in (K.PENDING, K.PENDING_MORE, K.PENDING_ADDED):
                for pdoc in doc.get(key) or ():
                    try:
                        p = Pending.from_doc(pdoc, codec)
                    except POISON as exc:
                        skip(i, f"an unreadable waiting event ({type(exc).__name__})")
                        continue
                    if p is None:
                        skip(i, "a waiting event that fails the contract")
                    else:
                        self.pending[p.event.event_id] = p
        self.checked_in = sum(1 for vs in self.visits.values() if vs.checkins)
        for vs in self.visits.values():
            for eid in vs.events:
                src = sources.get(eid)
                if src is not None:  # else its source was unreadable: it cannot be a replay
                    self.event_index[eid] = src
        for p in list(self.pending.values()):
            self.wait(p, changed=False)
            self.event_index[p.event.event_id] = p.source
        return checkpointed

    def _load_visit(self, vdoc: Any, codec: Codec, sources: dict[str, Any]) -> None:
        events = {eid: Source.from_list(src) for eid, src in
                  (vdoc.get(K.VISIT_EVENTS) or {}).items()}
        if K.VISIT_RECORD not in vdoc and K.VISIT_FIELDS not in vdoc:
            # Marks only: the record came in an earlier delta, or, replaying from a
            # checkpoint, the visit's slice comes later.
            held = self.visits.get(vdoc[K.VISIT_ID])
            if held is not None:
                held.load_marks(vdoc)
            sources.update(events)
            return
        vs = VisitState.from_doc(vdoc, codec)
        if vs is None:
            raise ValueError("its roster record fails the contract")
        sources.update(events)
        vid = vs.visit.visit_id
        if self.visits.get(vid) is None:
            self._index(vs.visit.client_id, vid)
        self.visits[vid] = vs


# What reading back a document that does not have the changelog's shape raises.
POISON = (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError,
          msgspec.MsgspecError)
