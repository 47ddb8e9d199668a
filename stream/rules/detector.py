"""The rules, for one partition's visits: pure code, an injected clock, no I/O.

A :class:`PartitionDetector` is fed batches of records (:meth:`~PartitionDetector.process`)
and swept by a timer (:meth:`~PartitionDetector.sweep`); both return an :class:`Output` of
escalation records to publish and rejections to dead-letter, and leave what changed for
:meth:`~PartitionDetector.take_delta`. It is a facade: each rule family decides in the
module named after it (matching, attendance, location, durations, unscheduled), the short
path takes the common check-in (shortpath), the timers are one heap (timers), what was said
of each escalation is the book (book), what the partition holds is its state
(stream/state/partition.py), and checkpoints are the checkpointer's
(stream/state/checkpoint.py).

Every state change is idempotent: a record replayed from the same source position changes
nothing, and an escalation id is opened at most once and resolved at most once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from sys import intern
from typing import Any

from geofence.fences import Decision
from stream.clock import Clock
from stream.contract import Codec, Event, Source, Visit
from stream.contract.bounds import Bounds
from stream.rules import safeguarding, visit_records
from stream.rules.at_risk import AtRisk
from stream.rules.attendance import Attendance, known_at
from stream.rules.book import EscalationBook
from stream.rules.cases import Cases
from stream.rules.durations import Durations
from stream.rules.inputs import InputMarks
from stream.rules.location import INSIDE, Location
from stream.rules.matching import Matching, Work
from stream.rules.output import Output, reject
from stream.rules.runfacts import event_fact, visit_fact
from stream.rules.shortpath import ShortPath
from stream.rules.timers import TimerKind, Timers
from stream.rules.unscheduled import ADHOC_PREFIX, Unscheduled
from stream.settings import Settings
from stream.state.checkpoint import Checkpointer
from stream.state.partition import PartitionState
from stream.state.visit import Mark, NearestMark, VisitState

__all__ = ["Output", "PartitionDetector"]

# Check-in methods whose place the location rule checks against the roster.
_PLACED = frozenset({"telephony", "nfc", "qr"})

# A deadline that waited this long for its input says so in its evidence.
_HELD_EVIDENCE_S = 1.0

_GRACE, _ADHOC, _SEEN, _FORGET, _CASE = (TimerKind.GRACE, TimerKind.ADHOC, TimerKind.SEEN,
                                         TimerKind.FORGET, TimerKind.CASE)
_NO_CHECK_OUT, _REVIEW = TimerKind.NO_CHECK_OUT, TimerKind.REVIEW


class PartitionDetector:
    # Whether the common check-in takes the short path (stream/rules/shortpath.py); the
    # full rules decide every case the same way, as tests hold.
    fast_path = True

    def __init__(self, partition: int, settings: Settings, clock: Clock,
                 codec: Codec | None = None) -> None:
        self.partition = partition
        self.settings = settings
        self.clock = clock
        self.codec = codec or Codec(Bounds.from_settings(settings))
        self.state = PartitionState(partition)
        self.timers = Timers()
        self.book = EscalationBook()
        self.checkpointer = Checkpointer(settings, clock.now())
        self.attendance = Attendance(settings, self.book, self.timers)
        self.location = Location(settings, self.book)
        self.durations = Durations(settings, self.book)
        self.unscheduled = Unscheduled(settings, self.book, self.timers)
        self.matching = Matching(settings, self.state, self.timers, self.unscheduled,
                                 self.codec)
        self.cases = Cases(settings, self.book, self.timers)
        self.safeguarding = safeguarding.Safeguarding(settings, self.book, self.state,
                                                      self.timers)
        self.at_risk = AtRisk(self.book, lambda v: self.attendance.deadlines(v)[0])
        self.short = ShortPath(settings, self.state, self.codec, self.matching,
                               self.attendance, self.book, self.cases.recovering)
        # How far the partition's inputs have been read (stream/rules/inputs.py): nothing
        # is awaited until the worker says which inputs there are (await_inputs).
        self.inputs = InputMarks()
        # When the oldest deadline left waiting for its input by the last sweep fell due.
        self._waiting: float | None = None
        # What could not be read back or applied, since the caller last took it: ``(where,
        # position, why)``, where is "ecm.state" or "ecm.escalations" (position: the
        # document's index in what restore() was given) or "sweep" (position -1).
        self.skipped: list[tuple[str, int, str]] = []
        # The visits a batch or sweep changed in a way their record may show: each one
        # settled gets its record (stream/rules/visit_records.py) at the batch's end.
        self._touched: dict[str, None] = {}

    # ---- what it holds, for the metrics and for callers that inspect it ---------------------

    @property
    def visits(self) -> dict[str, VisitState]:
        return self.state.visits

    @property
    def pending(self) -> dict[str, Any]:
        return self.state.pending

    @property
    def checked_in(self) -> int:
        return self.state.checked_in

    @property
    def deadlines_pending(self) -> int:
        """Armed deadlines and grace expiries; a visit's forgetting is not a deadline."""
        return self.timers.deadlines

    def next_due(self) -> float | None:
        return self.timers.next_due()

    # ---- a batch -----------------------------------------------------------------------------

    def process(self, records: Iterable[tuple[str, Any, Source]],
                stamps: Sequence[float] | None = None) -> Output:
        """Apply one batch: ``(kind, record, source)`` with kind ``roster``, ``event`` or
        ``action``, the record a validated Visit or Event or its decoded object. ``stamps``:
        each record's Kafka timestamp (wall epoch seconds, 0 when unknown), when the caller
        has them: a record counts as received when it reached Kafka, never later than now.

        Roster records are applied before the batch's events, so an event and the roster
        record it needs may arrive in the same batch in either order; actions come last.
        """
        now = self.clock.now()
        out = Output()
        events: list[tuple[Any, Source, float]] = []
        actions: list[tuple[Any, Source, float]] = []
        predictions: list[Any] = []
        # The clients rostered, in order, while events wait that their records may match.
        rostered: dict[str, None] | None = {} if self.state.pending else None
        if stamps is None:
            for kind, obj, source in records:
                if kind == "roster":
                    self._roster(obj, source, now, out, rostered, now)
                elif kind == "prediction":
                    predictions.append(obj)
                else:
                    (events if kind == "event" else actions).append((obj, source, now))
        else:
            from_wall = self.clock.from_wall
            for (kind, obj, source), stamp in zip(records, stamps, strict=True):
                received = min(now, from_wall(stamp)) if stamp else now
                if kind == "roster":
                    self._roster(obj, source, now, out, rostered, received)
                elif kind == "prediction":
                    predictions.append(obj)
                else:
                    (events if kind == "event" else actions).append((obj, source, received))
        work: list[Work] = []
        if rostered and self.state.pending:
            self.matching.retry(rostered, now, out, work)
        self.short.enabled = self.fast_path
        self.short.admit(events, now, out, work)
        t = time.perf_counter()
        decisions = self.location.locate(work)
        out.kernel_s = time.perf_counter() - t
        self.short.apply(work, decisions, now, out, self._record)
        if self.settings.runs:
            facts = out.runs
            for ev, vs, _ in work:
                if not vs.visit.cancelled:
                    facts.append(event_fact(ev.worker_id, vs.visit.visit_id, ev.type,
                                            ev.occurred_at, ev.received or now))
        for obj, source, received in actions:
            self._action(obj, source, received, now, out)
        for obj in predictions:  # after the batch's check-ins: a visit reached is not at risk
            self._prediction(obj, now, out)
        self._finish(now, out)
        out.latencies, out.resolutions = self.book.take_timings()
        out.case_timings, out.case_breaches = self.cases.take()
        return out

    def _finish(self, now: float, out: Output) -> None:
        """What a batch or sweep raised leads to: safeguarding reviews, visit records."""
        out.escalations += self.safeguarding.observe(out.escalations, now)
        self._settle(now, out)

    def _settle(self, now: float, out: Output) -> None:
        """The record of every settled visit the batch or sweep touched, or whose
        escalations it changed."""
        touched = self._touched
        if not self.settings.visit_records:
            touched.clear()
            return
        for e in out.escalations:
            touched[e.visit_id] = None
        if not touched:
            return
        visits = self.state.visits
        deadlines = self.attendance.deadlines
        for vid in touched:
            vs = visits.get(vid)
            if vs is None:
                continue  # an unscheduled visit's, or forgotten
            d = deadlines(vs.visit)
            settled = visit_records.outcome(vs, now, d[2])
            if settled is not None:
                out.visits.append(visit_records.build(vs, settled, self.book, d, now))
        touched.clear()

    def _action(self, obj: Any, source: Source, received: float, now: float,
                out: Output) -> None:
        action = self.codec.action(obj)
        if type(action) is tuple:
            out.rejections.append(reject(self.codec, action, obj, source))
            return
        raised, refusal = self.cases.apply(action, source, received, now)  # type: ignore[arg-type]
        out.escalations.extend(raised)
        if refusal is not None:
            out.rejections.append(reject(self.codec, refusal, obj, source))
        elif raised:
            out.accepted["action"] += 1

    def _prediction(self, obj: Any, now: float, out: Output) -> None:
        """A worker's run partition's prediction for one of its visits here
        (stream/rules/runs.py), written by the worker itself: one it cannot read, or for a
        visit no longer held, changes nothing."""
        try:
            vs = self.state.visits.get(obj["visit_id"])
            if vs is None:
                return
            arrival, basis = obj["arrival"], obj["basis"]
            out.escalations.extend(self.at_risk.predicted(
                vs, obj["worker_id"], None if arrival is None else float(arrival),
                obj["cause"], (basis[0], basis[1], float(basis[2]), float(basis[3]),
                               float(basis[4])), now))
        except (KeyError, TypeError, ValueError, IndexError):
            self.skipped.append(("prediction", -1, "unreadable"))

    def _roster(self, obj: dict[str, Any] | Visit, source: Source, now: float, out: Output,
                rostered: dict[str, None] | None, received: float) -> None:
        visit = self.codec.visit(obj)
        if not isinstance(visit, Visit):
            out.rejections.append(reject(self.codec, visit, obj, source))  # type: ignore[arg-type]
            return
        state = self.state
        vs = state.visits.get(visit.visit_id)
        if vs is not None and vs.visit.client_id != visit.client_id:
            out.rejections.append(reject(self.codec, (
                "invalid_value", "a visit's client_id cannot change; cancel and re-book it"),
                visit.raw, source))  # type: ignore[arg-type]
            return
        out.accepted["roster"] += 1
        if self.settings.runs:
            out.runs.append(visit_fact(
                visit.visit_id, self.partition, visit.start, visit.end, visit.lat, visit.lon,
                self.attendance.deadlines(visit)[0], visit.worker_ids,
                vs.visit.worker_ids if vs is not None else (), visit.cancelled))
        if vs is None:
            vs = VisitState(visit)
            state.book(vs)
            if visit.cancelled:
                self._touched[visit.visit_id] = None
        else:
            # A settled visit's record shows its roster as it stands.
            self._touched[visit.visit_id] = None
            if visit.cancelled and not vs.visit.cancelled:
                vs.cancelled_at = received
            elif visit.worker_ids != vs.visit.worker_ids or visit.start != vs.visit.start:
                vs.changed_at = received
                vs.change = "reassigned" if visit.worker_ids != vs.visit.worker_ids else "moved"
            vs.visit = visit
        state.dirty[visit.visit_id] = vs
        if visit.cancelled:
            out.escalations.extend(self.book.resolve_all(vs, now, "cancelled",
                                                         vs.cancelled_at or None))
        self.attendance.schedule(vs)
        if visit.cancelled:
            return
        if vs.checkins or vs.checkouts:  # else nothing to reconcile: a new visit, as a rule
            out.escalations.extend(self.attendance.reconcile(vs, now, "roster_update"))
        if rostered is not None:
            rostered[visit.client_id] = None

    def _record(self, ev: Event, vs: VisitState, source: Source, decision: Decision | None,
                now: float, out: Output) -> None:
        """The full rules for one matched event (the short path took the common case)."""
        v = vs.visit
        # Its source is in the event index since it was admitted (matching, restore).
        vs.add_event(ev.event_id)
        self.state.dirty[v.visit_id] = vs
        self._touched[v.visit_id] = None
        if v.cancelled:
            return
        mark = (Mark if ev.visit_id is not None else NearestMark)(
            ev.occurred_at, ev.received or now, ev.event_id, ev.method)
        check_in = ev.type == "check_in"
        if (not check_in and ev.visit_id is not None and ev.worker_id not in vs.checkins
                and ev.worker_id in v.worker_ids):
            self._take_back(vs, ev, known_at(mark), now, out)
        cases = self.cases
        if check_in and not cases.recovery_worker(vs, ev.worker_id):
            out.escalations.extend(self.attendance.wrong_worker(
                vs, ev.worker_id, ev.event_id, ev.occurred_at, now))
        located = decision is INSIDE
        if not located:
            judged = self.location.judge(vs, ev, decision, now)
            out.escalations.extend(judged)
            # A tag or a line on the roster places the worker as a fix inside would.
            located = ev.method in _PLACED and not judged
        if check_in and (v.client_id in cases.recovering
                         or v.visit_id in self.book.open_per_visit):
            out.escalations.extend(cases.checked_in(vs, ev, located, known_at(mark), now))
        if check_in:
            if not vs.checkins:
                self.state.checked_in += 1
            held = vs.checkins.get(ev.worker_id)
            if held is None or ev.occurred_at < held.occurred:
                vs.check_in(intern(ev.worker_id), mark)
            out.escalations.extend(self.attendance.reconcile(vs, now, "checked_in"))
        else:
            if ev.worker_id not in vs.checkouts:
                vs.check_out(intern(ev.worker_id), mark)
            out.escalations.extend(self.attendance.reconcile(vs, now, "checked_out"))
        if ev.worker_id in vs.checkins and ev.worker_id in vs.checkouts:
            out.escalations.extend(self.durations.judge(vs, ev.worker_id, now))

    def _take_back(self, vs: VisitState, ev: Event, known: float, now: float,
                   out: Output) -> None:
        """A check-out naming a visit its worker never checked into takes back the check-in
        matched by nearness to another of the client's visits (Matching.take_back). The
        visit left has its deadlines armed again at their own instants: the sweep raises
        what they would have raised."""
        left = self.matching.take_back(vs, ev)
        if left is None:
            return
        vid = left.visit.visit_id
        self._touched[vid] = None
        # Raised while it held the check-in: the worker checked out, of the other visit.
        out.escalations.extend(self.book.resolve(left, "no_check_out", now, "checked_out", {
            "checked_out_at": ev.occurred_at, "checked_in_to": vs.visit.visit_id}, known))
        if not left.visit.cancelled:
            # Its chain from the start: entries that fire twice open nothing twice.
            self.timers.push(*self.attendance.timeline(left)[0], vid)

    # ---- the timers ----------------------------------------------------------------------------

    def await_inputs(self, inputs: Iterable[tuple[str, int]]) -> None:
        """From now on, deadlines wait for these input partitions' read marks."""
        self.inputs.awaited = frozenset(inputs)

    def read(self, marks: Iterable[tuple[str, int, float]]) -> None:
        """Read marks from the partition's work topic, behind the records they cover."""
        self.inputs.note(marks)

    def sweep(self, until: float | None = None, limit: int | None = None) -> Output:
        """Raise every deadline that has passed and whose input has been read (up to
        ``until``, by default how far every input has been read); absence of events is
        the signal. At most ``limit`` timers are taken: a storm of deadlines falling due
        at once is swept in slices (:meth:`more_due` says whether one is left)."""
        now = self.clock.now()
        read = self.inputs.read_until() if until is None else until
        out = Output()
        visits = self.state.visits
        attendance = self.attendance
        raised = out.escalations
        held = self._waiting  # the oldest deadline waiting for input at the last sweep
        taken = 0
        for timer in self.timers.due(min(now, read)):
            taken += 1
            kind = timer.kind
            try:
                if kind is _GRACE:
                    self.matching.expire(timer.key, now, out)
                elif kind is _ADHOC:
                    self.unscheduled.forget(timer.key)
                elif kind is _SEEN:
                    self.state.event_index.pop(timer.key, None)
                elif kind is _CASE:
                    raised.extend(self.cases.fire(timer.key, timer.due, now))
                elif kind is _REVIEW:
                    self.book.forget(timer.key)
                else:
                    vs = visits.get(timer.key)
                    if vs is None:
                        continue  # forgotten: its entries fall due and are dropped
                    if kind is not _FORGET:
                        raised.extend(attendance.fire(vs, timer, now))
                        if (kind is _NO_CHECK_OUT and not visit_records.settled_early(vs)
                                and attendance.current(vs, timer)):
                            self._touched[timer.key] = None  # missed, or never checked out
                    elif attendance.current(vs, timer):
                        self._forget(timer.key)
            except Exception as exc:  # one bad visit must not stop the sweep
                self.skipped.append(("sweep", -1, f"a {kind} timer ({type(exc).__name__})"))
            if limit is not None and taken >= limit:
                break
        self._waiting = self.held_since(until)
        if held is not None and now - held >= _HELD_EVIDENCE_S:
            # The evidence of a delay that is the input's: how long the oldest deadline
            # waited for it.
            for e in raised:
                if e.revision == 1:  # an opening, not a case's change
                    e.evidence["input_held_s"] = round(now - held, 1)
        self._finish(now, out)
        out.latencies, out.resolutions = self.book.take_timings()
        out.case_timings, out.case_breaches = self.cases.take()
        return out

    def held_since(self, until: float | None = None) -> float | None:
        """The instant the oldest deadline still waiting for its input fell due (None when
        none waits): derived from the heap, so a partition whose marks trail by the usual
        fraction of a second shows that, not a wait that never ends."""
        due = self.timers.next_due()
        read = self.inputs.read_until() if until is None else until
        if due is not None and read < due <= self.clock.now():
            return due
        return None

    def more_due(self, until: float | None = None) -> bool:
        """Whether a timer is due that a sweep (up to ``until``, as :meth:`sweep`) would
        take: one a sliced sweep left."""
        due = self.timers.next_due()
        read = self.inputs.read_until() if until is None else until
        return due is not None and due <= min(self.clock.now(), read)

    def _forget(self, vid: str) -> None:
        """Drop a visit past its retention, with its events and escalation records."""
        self.state.forget(vid)
        self.book.forget(vid)

    # ---- the changelog and checkpoints -----------------------------------------------------

    def take_delta(self) -> dict[str, Any] | None:
        """The state changed since the last call, as one changelog document, or None. A
        completed checkpoint's base is written by the next one, whatever else changed."""
        cp = self.checkpointer
        return self.state.take_delta(cp.base, cp.at, force=cp.base_unwritten())

    def take_checkpoint(self, budget: int) -> dict[str, Any] | None:
        """The next slice of the checkpoint under way or due (stream/state/checkpoint.py)."""
        return self.checkpointer.take(budget, self.state, self.book.records, self.clock.now())

    def restore(self, deltas: Iterable[dict[str, Any]],
                escalations: Iterable[dict[str, Any]]) -> None:
        """Rebuild from the partition's changelog and escalation records, oldest first.

        The escalation records of checkpoint slices among the deltas are taken before
        ``escalations`` (read from the topic from where the checkpoint says)."""
        checkpointed = self.state.load(
            deltas, self.codec, lambda i, why: self.skipped.append(("ecm.state", i, why)))
        for record in checkpointed:
            if not self.book.restore(record):
                self.skipped.append(("ecm.state", -1, "a checkpoint's escalation record "
                                     "is not one"))
        for i, record in enumerate(escalations):
            if not self.book.restore(record):
                self.skipped.append(("ecm.escalations", i, "not an escalation record"))
        # The topic still holds the records of visits forgotten since: the partition that
        # wrote them has forgotten them too (_forget), and so does its rebuild.
        visits = self.state.visits
        for vid in {r.visit_id for r in self.book.records.values()} - visits.keys():
            if vid.startswith(ADHOC_PREFIX):
                self.unscheduled.arm_forgetting(vid)  # forgotten at the first sweep if due
            elif vid.startswith(safeguarding.PREFIX):
                pass  # armed by the safeguarding rule's restore, below
            else:
                self.book.forget(vid)
        self.cases.restored()
        self.safeguarding.restored()
        for vs in visits.values():
            self.attendance.schedule(vs)
        for p in self.state.pending.values():
            self.timers.push(p.expires, TimerKind.GRACE, p.event.event_id)
