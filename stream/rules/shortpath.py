"""The short path: the common check-in, decided with the fewest steps.

Most events of a day are a rostered worker's first check-in at a visit of their own client,
in time, inside the fence, before any deadline, with nothing open on the visit. The full
rules (matching, attendance, location, durations) decide that case the same way, by many
more steps; this module takes it without them and hands every other event to them. It is
the rules' twin, not a rule: ``tests/unit/stream/rules/test_shortpath.py`` runs days through both
and holds every escalation, dead letter and changelog document equal, and
``PartitionDetector.fast_path = False`` turns it off.

Each function walks a whole batch, so the common case costs no call of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Container

from geofence.fences import Decision
from stream.contract import Codec, Event, Source
from stream.rules.attendance import Attendance
from stream.rules.book import EscalationBook
from stream.rules.location import INSIDE
from stream.rules.matching import Matching, Work
from stream.rules.output import Output, reject
from stream.settings import Settings
from stream.state.partition import PartitionState
from stream.state.visit import Mark, NearestMark, VisitState

# The full rules for one matched event (PartitionDetector._record).
Full = Callable[[Event, VisitState, Source, Decision | None, float, Output], None]


class ShortPath:
    def __init__(self, settings: Settings, state: PartitionState, codec: Codec,
                 matching: Matching, attendance: Attendance, book: EscalationBook,
                 recovering: Container[str] = ()) -> None:
        self.settings = settings
        self.state = state
        self.codec = codec
        self.matching = matching
        self.attendance = attendance
        self.book = book
        # Clients with a recovery worker on the way (stream/rules/cases.py): their
        # check-ins may verify a recovery, so the full rules take them.
        self.recovering = recovering
        self.enabled = True

    def admit(self, events: list[tuple[object, Source, float]], now: float, out: Output,
              work: list[Work]) -> None:
        """Admit a batch's events, in order, into ``work``: validated (a rejection
        dead-lettered), then either the common case (in time, seen for the first time,
        naming a visit of its own client) or :meth:`Matching.admit`."""
        state = self.state
        visits, index = state.visits, state.event_index
        earliest = now - self.settings.max_event_age_s
        latest = now + self.settings.future_tolerance_s
        fast, enabled = 0, self.enabled
        full = self.matching.admit
        validate_event = self.codec.event
        for obj, source, received in events:
            event = obj if type(obj) is Event else validate_event(obj)  # type: ignore[arg-type]
            if type(event) is not Event:
                out.rejections.append(reject(self.codec, event, obj, source))  # type: ignore[arg-type]
                continue
            event.received = received
            vid = event.visit_id
            if (enabled and earliest <= event.occurred_at <= latest
                    and vid is not None and event.event_id not in index):
                vs = visits.get(vid)
                if vs is not None and vs.visit.client_id == event.client_id:
                    index[event.event_id] = source
                    fast += 1
                    work.append((event, vs, source))
                    continue
            full(event, source, now, out, work)
        out.accepted["event"] += fast

    def apply(self, work: list[Work], decisions: list[Decision | None], now: float,
              out: Output, full: Full) -> None:
        """Apply a batch's matched events, in order: the common case (a rostered worker's
        first check-in at a visit with nothing open, inside its fence and before its
        deadlines) is only recorded; every other event goes to ``full``."""
        state = self.state
        dirty = state.dirty
        opened = self.book.open_per_visit
        recovering = self.recovering
        deadlines = self.attendance.deadlines
        enabled = self.enabled
        f = state.firsts
        f_id, f_worker, f_occurred = f.ids.append, f.workers.append, f.occurred.append
        f_received, f_event, f_source = f.received.append, f.events.append, f.sources.append
        for (ev, vs, source), decision in zip(work, decisions, strict=True):
            v = vs.visit
            if (enabled and not vs.checkins and not vs.checkouts
                    and ev.type == "check_in" and decision is INSIDE and not v.cancelled
                    and ev.worker_id in v.worker_ids and v.visit_id not in opened
                    and v.client_id not in recovering):
                late, missed = deadlines(v)[:2]
                first = late if late <= missed else missed
                if ev.occurred_at <= first and ev.received <= first:
                    state.checked_in += 1
                    # The visit's own (interned) copy of the worker id.
                    ids = v.worker_ids
                    worker = ids[0] if ids[0] == ev.worker_id else ids[1]
                    named = ev.visit_id is not None
                    vs.check_in(worker, (Mark if named else NearestMark)(
                        ev.occurred_at, ev.received, ev.event_id, ev.method))
                    # Events while it was cancelled (the row has them all), or a mark
                    # matched by nearness (only a row keeps that): a row, not columns.
                    if vs.events or not named:
                        vs.add_event(ev.event_id)
                        dirty[v.visit_id] = vs
                        continue
                    # Its first event (a GPS fix: only those have a decision): the delta's
                    # columns, not a row.
                    vs.events = (ev.event_id,)
                    f_id(v.visit_id)
                    f_worker(worker)
                    f_occurred(ev.occurred_at)
                    f_received(ev.received)
                    f_event(ev.event_id)
                    f_source(source)
                    continue
            full(ev, vs, source, decision, now, out)
