"""Read marks: up to when each input partition a worker owns has been routed.

The worker asks the broker, every sweep interval, where each of its input partitions
ends, noting the instant (worker clock) before it asked: everything that reached the
partition before that instant lies below the end it is told. Once the router has routed
every record below that end, and the broker has acknowledged what it forwarded, the
partition is *read up to* that instant. The marks go into every work partition, behind the
records they cover (:func:`mark_messages`), and each partition's deadlines wait for the
oldest of its inputs' marks (stream/rules/inputs.py).

A worker that owns no partition of an input, or that is behind, marks nothing for it, so
the deadlines that depend on it wait: for the group to hand a dead worker's partitions to
another, for the broker to come back, for a backlog to be read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import orjson

from stream.rules.inputs import Input

# Ends asked for and not yet reached, per partition; past this many (a router far
# behind), the older half is thinned: a mark a little older is still a true one.
_MAX_ASKED = 64


class ReadMarks:
    """Per owned input partition: the ends asked for, and how far it has been read."""

    def __init__(self) -> None:
        self._asked: dict[Input, list[tuple[float, int]]] = {}
        self.read: dict[Input, float] = {}
        self.moved = False  # a mark moved since the last take()

    def asked(self, at: float, ends: Mapping[Input, int]) -> None:
        """The partitions' ends, as the broker gave them after ``at``."""
        for tp, end in ends.items():
            queue = self._asked.setdefault(tp, [])
            queue.append((at, end))
            if len(queue) > _MAX_ASKED:
                del queue[: _MAX_ASKED // 2 : 2]

    def reached(self, positions: Mapping[Input, int]) -> None:
        """The next offset each partition will route (every record below it is routed)."""
        for tp, position in positions.items():
            queue = self._asked.get(tp)
            if not queue:
                continue
            done = 0
            while done < len(queue) and queue[done][1] <= position:
                done += 1
            if done:
                at = queue[done - 1][0]
                del queue[:done]
                if at > self.read.get(tp, float("-inf")):
                    self.read[tp] = at
                    self.moved = True

    def keep(self, owned: Iterable[Input]) -> None:
        """Forget the partitions no longer owned: their new owner marks them."""
        owned = set(owned)
        for held in (self._asked, self.read):
            for tp in [tp for tp in held if tp not in owned]:
                del held[tp]

    def take(self) -> list[tuple[str, int, float]]:
        """Every partition's mark, to send; the moved flag is cleared."""
        self.moved = False
        return [(t, p, at) for (t, p), at in sorted(self.read.items())]


def mark_message(marks: list[tuple[str, int, float]]) -> bytes:
    """An ``ecm.work`` message that carries read marks and no records."""
    return orjson.dumps({"items": [], "read": marks})
