"""A partition's timers: what falls due when, in one heap.

A visit has one entry at a time: its next deadline, armed again by the rule that handles it
when it fires, so a million tracked visits are a million entries, not four million. An
event waiting for its roster has a grace entry; an unscheduled visit's records and an
expired event's id each have an entry that forgets them. An entry that was superseded (its
visit re-booked, cancelled or forgotten) stays in the heap until due and is then skipped
by the rule that owns it: the heap never searches.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from enum import StrEnum

import msgspec


class TimerKind(StrEnum):
    """What an entry does when it falls due. String values, so that entries due at the same
    instant are taken in the same order as ever (by kind, then key)."""

    LATE = "late"  # a visit's late deadline (stream/rules/attendance.py)
    MISSED = "missed"  # its missed deadline
    NO_CHECK_OUT = "no_check_out"  # its no-check-out deadline
    FORGET = "forget"  # its retention ran out: the visit is dropped
    GRACE = "grace"  # an event waited for its roster long enough (stream/rules/matching.py)
    ADHOC = "adhoc"  # an unscheduled visit's records are dropped (stream/rules/unscheduled.py)
    SEEN = "seen"  # an expired event's id is dropped from the event index
    CASE = "case"  # an escalation's case has a deadline (stream/rules/cases.py)
    REVIEW = "review"  # a safeguarding review is dropped (stream/rules/safeguarding.py)


# Entries that forget rather than decide: left out of the armed-deadlines gauge.
FORGETTING = frozenset({TimerKind.FORGET, TimerKind.ADHOC, TimerKind.SEEN, TimerKind.REVIEW})


class Timer(msgspec.Struct, gc=False, order=True, array_like=True):
    """A heap entry, ordered as the tuple ``(due, kind, key)`` is: ties at one instant are
    broken by kind and key, deterministically. A struct the collector does not track, where
    a tuple is tracked until a collection walks it: a roster batch arms one per visit."""

    due: float
    kind: TimerKind
    key: str


class Timers:
    """The heap, and how many of its entries forget rather than decide."""

    __slots__ = ("_forgets", "_heap")

    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._forgets = 0

    def push(self, due: float, kind: TimerKind, key: str) -> None:
        heapq.heappush(self._heap, Timer(due, kind, key))
        if kind in FORGETTING:
            self._forgets += 1

    def push_deadline(self, due: float, kind: TimerKind, key: str) -> None:
        """:meth:`push` for a kind that decides (a roster batch arms one per visit)."""
        heapq.heappush(self._heap, Timer(due, kind, key))

    def next_due(self) -> float | None:
        return self._heap[0].due if self._heap else None

    @property
    def deadlines(self) -> int:
        """Armed deadlines and grace expiries; a forgetting is not a deadline."""
        return len(self._heap) - self._forgets

    def due(self, now: float) -> Iterator[Timer]:
        """Take every entry due by ``now``, in order. The same entry armed twice (a
        re-booking that kept it) is taken once."""
        heap = self._heap
        while heap and heap[0].due <= now:
            entry = heapq.heappop(heap)
            popped = 1
            while heap and heap[0] == entry:
                heapq.heappop(heap)
                popped += 1
            if entry.kind in FORGETTING:
                self._forgets -= popped
            yield entry

    def __iter__(self) -> Iterator[Timer]:
        """Every entry, superseded ones included, in no order."""
        return iter(self._heap)

    def __len__(self) -> int:
        return len(self._heap)
