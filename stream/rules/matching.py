"""Matching: which visit an event belongs to, and what waits for a roster record.

An event is admitted when its device time is within the accepted range of the worker clock
(``clock_in_future``, ``clock_too_old``) and its id has not been seen before from another
source (``duplicate_event``; the same source again is a replay, and changes nothing). It
matches the visit it names (of its own client: ``client_mismatch``), or, naming none, the
visit :meth:`Matching.nearest` finds (a check-out naming a visit takes back a check-in
matched there by nearness: :meth:`Matching.take_back`). An event that matches nothing waits
``ECM_UNSCHEDULED_GRACE_S`` for its roster record: a roster batch retries its clients'
waiting events, and a grace that runs out ends as ``unknown_visit`` (it named a visit) or
an unscheduled visit (stream/rules/unscheduled.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from stream.contract import Codec, Event, Source
from stream.contract.codec import event_object
from stream.rules.output import Output, reject
from stream.rules.timers import TimerKind, Timers
from stream.rules.unscheduled import Unscheduled
from stream.settings import Settings
from stream.state.partition import PartitionState
from stream.state.visit import Pending, VisitState

# An event matched to its visit, waiting for the batch's geofence call: (event, visit,
# where the event came from), a tuple, as one is built for every event.
Work = tuple[Event, VisitState, Source]


class Matching:
    def __init__(self, settings: Settings, state: PartitionState, timers: Timers,
                 unscheduled: Unscheduled, codec: Codec) -> None:
        self.settings = settings
        self.state = state
        self.timers = timers
        self.unscheduled = unscheduled
        self.codec = codec

    def admit(self, event: Event, source: Source, now: float, out: Output,
              work: list[Work]) -> None:
        """An event seen for the first time: matched (into ``work``), left to wait, or
        rejected."""
        s = self.settings
        if event.occurred_at > now + s.future_tolerance_s:
            out.rejections.append(reject(self.codec, ("clock_in_future", (
                f"occurred_at is {event.occurred_at - now:.0f} s ahead of the worker clock")),
                event.raw, source))
            return
        if event.occurred_at < now - s.max_event_age_s:
            out.rejections.append(reject(self.codec, ("clock_too_old", (
                f"occurred_at is {now - event.occurred_at:.0f} s in the past")),
                event.raw, source))
            return
        index = self.state.event_index
        seen = index.get(event.event_id)
        if seen is not None:
            if seen == source:
                out.replayed += 1
            else:
                out.rejections.append(reject(self.codec, ("duplicate_event", (
                    f"event_id first seen at "
                    f"{seen.topic}[{seen.partition}]@{seen.offset}#{seen.index}")),
                    event.raw, source))
            return
        index[event.event_id] = source
        self.match_or_wait(event, source, now, out, work, waiting=None)

    def retry(self, clients: Iterable[str], now: float, out: Output, work: list[Work]) -> None:
        """Match again the events waiting for these clients' roster records."""
        state = self.state
        for p in state.waiting_for(clients):
            self.match_or_wait(p.event, p.source, now, out, work, waiting=p)
            if p.event.event_id not in state.pending:  # matched, or rejected
                state.settled(p.event.event_id)

    def match_or_wait(self, event: Event, source: Source, now: float, out: Output,
                      work: list[Work], *, waiting: Pending | None) -> None:
        vs = None if event.visit_id is None else self.state.visits.get(event.visit_id)
        if vs is not None:
            if vs.visit.client_id != event.client_id:
                out.rejections.append(reject(self.codec, ("client_mismatch", (
                    "the event's client_id is not the visit's")), event.raw, source))
                return
        elif event.visit_id is None:
            vs = self.nearest(event)
        if vs is not None:
            out.accepted["event"] += 1
            work.append((event, vs, source))
            return
        if waiting is not None:
            # Still no roster: it waits out its original grace period (its timer stands),
            # as the changelog already has it.
            self.state.wait(waiting, changed=False)
            return
        # From when it reached Kafka: a roster record read by then matches it.
        received = event.received or now
        expires = received + self.settings.unscheduled_grace_s
        if type(event.raw) is tuple:
            # Validated from its message's bytes: the changelog writes the record it stands
            # for, and a dead letter, if its grace runs out, carries that.
            event.raw = event_object(event)
        self.state.wait(Pending(event, source, received, expires))
        self.timers.push(expires, TimerKind.GRACE, event.event_id)

    def nearest(self, event: Event) -> VisitState | None:
        """The visit an event that names none belongs to.

        A check-out goes to the visit this worker is checked into at this client (the
        latest open check-in before it); a check-in, to the visit this worker checked out
        of, by a check-out that named it, after it, without checking in. Otherwise: the
        client's visit for this worker nearest in time, else any of the client's, a visit
        the worker has checked into and out of already last (for a check-in). Only
        visits whose window, widened by ``match_window_s`` each side, holds the event
        qualify; cancelled visits never match an event that names no visit.
        """
        t = event.occurred_at
        visits = self.state.visits
        ids = self.state.client_visits(event.client_id)
        if event.type == "check_out":
            # A check-out closes the visit this worker is checked into at this client: a
            # worker running late can check out inside the next visit's scheduled window.
            open_visits = [vs for vid in ids
                           if not (vs := visits[vid]).visit.cancelled
                           and event.worker_id in vs.checkins
                           and event.worker_id not in vs.checkouts
                           and vs.checkins[event.worker_id].occurred <= t]
            if open_visits:
                return max(open_visits, key=lambda vs: vs.checkins[event.worker_id].occurred)
        else:
            # A check-out that named its visit came first, without its check-in: this is it
            # (as a check-out naming a visit takes back a check-in matched elsewhere,
            # take_back).
            named_outs = [vs for vid in ids
                          if not (vs := visits[vid]).visit.cancelled
                          and (m := vs.checkouts.get(event.worker_id)) is not None
                          and m.named and event.worker_id not in vs.checkins
                          and m.occurred >= t]
            if named_outs:
                return min(named_outs, key=lambda vs: vs.checkouts[event.worker_id].occurred)
        window = self.settings.match_window_s
        worker, check_in = event.worker_id, event.type == "check_in"
        best: tuple[bool, bool, float, float] | None = None
        chosen = None
        for vid in ids:
            vs = visits[vid]
            v = vs.visit
            if v.cancelled or not (v.start - window <= t <= v.end + window):
                continue
            gap = max(v.start - t, 0.0, t - v.end)
            # A visit this worker has already checked into and out of before it is done
            # with: the check-in is another's, as a rule (overlapping bookings at one home).
            closed = (check_in and (m := vs.checkouts.get(worker)) is not None
                      and worker in vs.checkins and m.occurred <= t)
            key = (worker not in v.worker_ids, closed, gap, abs(t - v.start))
            if best is None or key < best:
                best, chosen = key, vs
        return chosen

    def take_back(self, vs: VisitState, ev: Event) -> VisitState | None:
        """A check-out names ``vs``, which its worker never checked into, while the worker's
        check-in at the same client, which named no visit, went by nearness to another of
        the client's visits (a worker so late for one visit that the check-in fell in the
        next one's window): the check-in was this visit's, and comes back to it. Returns
        the visit it left, or None when there is none to take back."""
        state, worker = self.state, ev.worker_id
        held: VisitState | None = None
        for vid in state.client_visits(vs.visit.client_id):
            other = state.visits[vid]
            m = other.checkins.get(worker)
            if (other is vs or m is None or m.named or worker in other.checkouts
                    or m.occurred > ev.occurred_at):
                continue
            if held is None or m.occurred > held.checkins[worker].occurred:
                held = other
        if held is None:
            return None
        mark = held.take_check_in(worker)
        if not held.checkins:
            state.checked_in -= 1
        if not vs.checkins:
            state.checked_in += 1
        vs.check_in(worker, mark)
        vs.add_event(mark.event_id)
        state.dirty[held.visit.visit_id] = held
        return held

    def expire(self, event_id: str, now: float, out: Output) -> None:
        """An event's grace ran out: ``unknown_visit`` if it named a visit, else an
        unscheduled visit."""
        p = self.state.expire(event_id)
        if p is None:
            return
        ev = p.event
        # Its id stays in the event index, so that a resend is a duplicate, until a resend
        # would be refused as too old anyway.
        self.timers.push(ev.occurred_at + self.settings.max_event_age_s + 1.0, TimerKind.SEEN,
                         event_id)
        if ev.visit_id is not None:
            grace = self.settings.unscheduled_grace_s
            out.rejections.append(reject(self.codec, ("unknown_visit", (
                f"no roster record for the visit within {grace:.0f} s")), ev.raw, p.source))
            return
        out.accepted["event"] += 1  # evidence of an unscheduled visit
        out.escalations.extend(self.unscheduled.judge(ev, now, p.received))
