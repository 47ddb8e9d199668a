"""How far a partition's input has been read: deadlines wait for it.

Absence is the signal only for input that has been read. A visit's check-in can come on
any input partition (a producer that does not key by client spreads them), and reaches
the visit's partition through the router of whichever worker owns that input partition.
So each router says, per input partition it owns, up to when (on the worker clock)
everything that reached Kafka there has been routed: a *read mark*, written into every
work partition behind the records it routed (stream/worker/watermark.py). A partition's
deadlines fall due only up to the oldest of its inputs' marks, as event-time timers fire
only when the watermark of every input has passed (Flink): a deadline whose check-in sits
in a stalled input partition (its worker dead, the broker out of reach) is raised late,
once that partition has been read, never falsely.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

# An input partition, as a read mark names it: (topic, partition).
Input = tuple[str, int]


class InputMarks:
    """The read marks a partition has been given, and which inputs it waits for."""

    __slots__ = ("awaited", "marks")

    def __init__(self, awaited: Iterable[Input] | None = None) -> None:
        # None: nothing awaited (a detector driven by hand: tests, replays).
        self.awaited = None if awaited is None else frozenset(awaited)
        self.marks: dict[Input, float] = {}

    def note(self, marks: Iterable[tuple[str, int, float]]) -> None:
        """Read marks, in any order: each input's mark only moves forward (an old owner's
        mark read after a new owner's says less)."""
        held = self.marks
        for topic, partition, at in marks:
            key = (topic, partition)
            if at > held.get(key, -math.inf):
                held[key] = at

    def read_until(self) -> float:
        """The instant up to which every awaited input has been read: minus infinity while
        any has given no mark, infinity when nothing is awaited."""
        if self.awaited is None:
            return math.inf
        held = self.marks
        return min((held.get(i, -math.inf) for i in self.awaited), default=math.inf)
