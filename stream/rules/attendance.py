"""Attendance: ``late``, ``missed``, ``no_check_out`` and ``wrong_worker``.

From the late and missed visits policy (``shared/seeds/ecm-late-and-missed-visits-policy.txt``):
a visit is late when nobody has checked in by its late threshold after the scheduled start
(the contract sets it, 15 minutes by default) and missed by its missed threshold (30
minutes by default); absence of events is the signal, so these are raised by timers.
``no_check_out`` is raised when a worker who checked in has not checked out by its
threshold after the scheduled end. ``wrong_worker`` is a check-in by a worker the visit
does not roster.

Each is resolved by the facts that answer it: an arrival resolves late and missed (and
raises them after the fact when the arrival came after a deadline no timer saw, as when a
visit is booked after its deadline), every worker checked out resolves no_check_out, and a
roster update that rosters the worker who came resolves wrong_worker.

A visit's timers form a chain (:meth:`Attendance.timeline`): late, missed, no_check_out,
then its forgetting, in the order they fall due; one entry is armed at a time, and each
arms the next when it fires.
"""

from __future__ import annotations

import math

from stream.contract import Visit
from stream.contract.records import Escalation
from stream.rules import causes
from stream.rules.at_risk import KIND as AT_RISK
from stream.rules.at_risk import eta_evidence
from stream.rules.book import EscalationBook
from stream.rules.timers import Timer, TimerKind, Timers
from stream.settings import Settings
from stream.state.visit import Mark, VisitState

# Visits are forgotten this long after their scheduled end: late uploads from phones that
# were offline for a day still find their visit.
RETENTION_S = 36 * 3600.0

_LATE, _MISSED, _NO_CHECK_OUT, _FORGET = (TimerKind.LATE, TimerKind.MISSED,
                                          TimerKind.NO_CHECK_OUT, TimerKind.FORGET)
# Where each kind's instant is in Attendance.deadlines().
_AT = {_LATE: 0, _MISSED: 1, _NO_CHECK_OUT: 2, _FORGET: 3}


class Attendance:
    def __init__(self, settings: Settings, book: EscalationBook, timers: Timers) -> None:
        self.book = book
        self.timers = timers
        # The default thresholds, for visits without their own.
        self._late_s = float(settings.late_after_s)
        self._missed_s = float(settings.missed_after_s)
        self._no_checkout_s = float(settings.no_checkout_after_s)

    # ---- when -----------------------------------------------------------------------------

    def deadlines(self, v: Visit) -> tuple[float, float, float, float]:
        """The instants of a visit's timers: late, missed and no_check_out (its own
        threshold, else the configured default), then its forgetting. One call for all
        four: every roster record arms its first timer from them."""
        return (v.start + (v.late_after_s or self._late_s),
                v.start + (v.missed_after_s or self._missed_s),
                v.end + (v.no_checkout_after_s or self._no_checkout_s),
                v.end + RETENTION_S)

    def due(self, v: Visit, kind: TimerKind) -> float:
        """The instant of one of a visit's timers (late, missed, no_check_out, forget)."""
        return self.deadlines(v)[_AT[kind]]

    def timers_of(self, v: Visit, deadlines: tuple[float, float, float, float] | None = None,
                  cancelled_at: float = 0.0) -> list[tuple[float, TimerKind]]:
        """The visit's timers, ``(due, kind)``: its deadlines, and its forgetting. Once it
        is cancelled, only the deadlines that fell before the cancellation reached Kafka
        (``cancelled_at``): those still stand, though the sweep may reach them after the
        cancellation is read (they wait for their input). ``deadlines``: :meth:`deadlines`
        of ``v``, if the caller has them."""
        late, missed, no_check_out, forget = deadlines or self.deadlines(v)
        timers = [(late, _LATE), (missed, _MISSED), (no_check_out, _NO_CHECK_OUT)]
        if v.cancelled:
            timers = [(due, kind) for due, kind in timers if due < cancelled_at]
        timers.append((forget, _FORGET))
        return timers

    def timeline(self, vs: VisitState) -> list[tuple[float, TimerKind]]:
        """The visit's timers in the order they fall due."""
        return sorted(self.timers_of(vs.visit, cancelled_at=vs.cancelled_at))

    def schedule(self, vs: VisitState) -> None:
        """Arm the visit's first timer."""
        v = vs.visit
        late, missed, no_check_out, forget = self.deadlines(v)
        if not v.cancelled and late < missed and late < no_check_out and late < forget:
            # As a rule lateness comes first: armed without the list of four.
            self.timers.push_deadline(late, _LATE, v.visit_id)
            return
        due, kind = min(self.timers_of(v, cancelled_at=vs.cancelled_at))
        self.timers.push(due, kind, v.visit_id)

    # ---- the timers ------------------------------------------------------------------------

    def current(self, vs: VisitState, timer: Timer) -> bool:
        """Whether a visit's timer entry still stands: a re-booking that moved the instant
        armed a new entry, and this one is skipped."""
        return self.due(vs.visit, timer.kind) == timer.due

    def fire(self, vs: VisitState, timer: Timer, now: float) -> list[Escalation]:
        """A visit's deadline fell due (not its forgetting): what it raises, and the next
        timer of its chain armed; nothing for an entry that no longer stands."""
        due, kind = timer.due, timer.kind
        v = vs.visit
        deadlines = self.deadlines(v)
        if deadlines[_AT[kind]] != due:
            return []  # re-booked since: the new instant has its own entry
        timeline = sorted(self.timers_of(v, deadlines, vs.cancelled_at))
        if (due, kind) not in timeline:
            return []  # cancelled before it: its chain goes on from the cancellation
        raised = self._deadline(vs, kind, due, now)
        if raised and v.cancelled:
            # It fell due before the cancellation reached Kafka, and is raised as of then;
            # the cancellation answers it at once.
            raised += self.book.resolve_all(vs, now, "cancelled", vs.cancelled_at or None)
        elif raised and (vs.checkins or vs.checkouts):
            # Raised as of the deadline, from what had reached Kafka by then; what was read
            # since (a backlog read after a hold) answers it at once.
            raised += self.reconcile(vs, now, "deadline")
        at = timeline.index((due, kind)) + 1
        if at < len(timeline):
            self.timers.push(*timeline[at], v.visit_id)
        return raised

    def _deadline(self, vs: VisitState, kind: TimerKind, due: float,
                  now: float) -> list[Escalation]:
        v = vs.visit
        if kind is _LATE or kind is _MISSED:
            if known_arrival(vs) <= due:
                return []  # attended, as far as Kafka knew by the deadline
            present = sorted(w for w, m in vs.checkins.items() if known_at(m) <= due)
            raised = self.book.open(vs, kind.value, due, now, {
                "workers_absent": [w for w in v.worker_ids if w not in present],
                "workers_present": present,
                "minutes_after_start": round((now - v.start) / 60.0, 1),
                **eta_evidence(vs), **causes.at_deadline(vs, now, self.deadlines(v)[0])})
            if kind is _LATE and raised:  # late takes over from the prediction
                raised += self.book.resolve(vs, AT_RISK, now, "late_raised", {}, due)
            return raised
        # Checked in and not out by the deadline, by when each reached Kafka.
        still_in = sorted(w for w, m in vs.checkins.items() if m.received <= due and not (
            w in vs.checkouts and vs.checkouts[w].received <= due))
        if not still_in:
            return []
        return self.book.open(vs, kind.value, due, now, {
            "workers_not_checked_out": still_in,
            "checked_in_at": min(vs.checkins[w].occurred for w in still_in)})

    # ---- the facts -------------------------------------------------------------------------

    def wrong_worker(self, vs: VisitState, worker_id: str, event_id: str, occurred: float,
                     now: float) -> list[Escalation]:
        """A check-in by ``worker_id``: an escalation if the visit does not roster them."""
        v = vs.visit
        if worker_id in v.worker_ids:
            return []
        return self.book.open(vs, "wrong_worker", occurred, now, {
            "worker_id": worker_id, "rostered_worker_ids": list(v.worker_ids),
            "event_id": event_id})

    def reconcile(self, vs: VisitState, now: float, why: str) -> list[Escalation]:
        """Resolve what the visit's current check-ins and check-outs have answered."""
        v = vs.visit
        out: list[Escalation] = []
        arrived = vs.arrival()
        if vs.checkins and self.book.is_open(v.visit_id, AT_RISK):
            out += self.book.resolve(vs, AT_RISK, now, "arrived", {},
                                     min(known_at(m) for m in vs.checkins.values()))
        if arrived is not None:
            late, missed = self.deadlines(v)[:2]
            known = known_arrival(vs)
            book, vid = self.book, v.visit_id
            for kind, deadline in (("late", late), ("missed", missed)):
                if known > deadline and not book.known(vid, kind):
                    # The rule became true before its timer could fire: a late arrival
                    # inside one sweep interval, or a visit booked after its deadline.
                    out += book.open(vs, kind, deadline, now, {
                        "workers_absent": [], **causes.at_deadline(vs, deadline, late)})
                if book.is_open(vid, kind):  # the evidence is built only for a resolution
                    out += book.resolve(vs, kind, now, "arrived", {
                        "arrived_at": arrived, "lateness_s": round(arrived - v.start, 1),
                        "delivery_delay_s": round(max(
                            m.received - m.occurred for m in vs.checkins.values()), 1),
                        **causes.on_arrival(vs, deadline)}, known)
        # Most calls follow a check-in, with no check-out yet: that is tested first.
        if vs.checkouts and vs.checkins and all(w in vs.checkouts for w in vs.checkins):
            out_at = max(m.occurred for m in vs.checkouts.values())
            deadline = self.deadlines(v)[2]
            # In by the deadline and out only after it, by when each reached Kafka.
            late_out = sorted(w for w, m in vs.checkins.items() if m.received <= deadline
                              and vs.checkouts[w].received > deadline)
            if late_out and deadline <= now and not self.book.known(v.visit_id,
                                                                     "no_check_out"):
                # The deadline passed before the check-out reached Kafka, and no sweep saw
                # it (the check-out was read before the deadline was swept: it waits for
                # its input): raised now, with what the sweep would have said, and resolved.
                out += self.book.open(vs, "no_check_out", deadline, now, {
                    "workers_not_checked_out": late_out,
                    "checked_in_at": min(vs.checkins[w].occurred for w in late_out)})
            out += self.book.resolve(vs, "no_check_out", now, "checked_out", {
                "checked_out_at": out_at}, max(known_at(m) for m in vs.checkouts.values()))
        if why == "roster_update" and vs.checkins and all(w in v.worker_ids for w in vs.checkins):
            out += self.book.resolve(vs, "wrong_worker", now, "reassigned", {})
        return out


def known_at(m: Mark) -> float:
    """When a check-in or check-out was both true and known: its device time, or when it
    reached Kafka if that was later."""
    return m.occurred if m.occurred >= m.received else m.received


def known_arrival(vs: VisitState) -> float:
    """When the visit was known to be attended (:meth:`VisitState.arrival`, each check-in
    taken at :func:`known_at`): infinity until it is."""
    need = len(vs.visit.worker_ids)
    known = sorted(known_at(m) for m in vs.checkins.values())
    return known[need - 1] if len(known) >= need else math.inf
