"""The contract as the worker uses it: raw bytes or objects in, a record or ``(reason,
detail)`` out, through the one-pass decoder where it can and the full checks where it
cannot.

A :class:`Codec` owns what decoding remembers between messages: the worker ids visits
share, the roster instants already parsed, and the last messages decoded again. One worker
has one, shared by its router and its partitions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import orjson

from stream.contract import checks, onepass
from stream.contract.records import Event, Visit, WorkerIds
from stream.timeutil import parse_instant

# A roster's visits start and end at a few thousand distinct instants (on the minute or the
# quarter hour, over a day or a week), so each is parsed once; a check-in's device time is
# as a rule its own and is parsed every time.
_INSTANTS_HELD = 1 << 14
# The last messages decoded again: the records of a message are as a rule rejected, or left
# waiting for their roster, together, and decoding the whole message for each made that
# quadratic in its size. A message value is a bytes object, whose hash Python computes
# once. Four messages' objects are held at most: a few MB each at the largest message size.
_MESSAGES_HELD = 4


class Codec:
    """Decoding with its caches, owned by whoever decodes (a worker, a test, a benchmark)."""

    def __init__(self, loads: Callable[[bytes], Any] = orjson.loads) -> None:
        self.workers = WorkerIds()
        self.instant = functools.lru_cache(maxsize=_INSTANTS_HELD)(parse_instant)
        self._decoded = functools.lru_cache(maxsize=_MESSAGES_HELD)(loads)

    def records(self, value: bytes | None, roster: bool) -> list[Visit | Event | None] | None:
        """A message's records through the one-pass decoder (:func:`onepass.fast_records`)."""
        return onepass.fast_records(value, roster, self.workers, self.instant)

    def visit(self, obj: dict[str, Any] | Visit) -> Visit | tuple[str, str]:
        """A :class:`Visit`, or ``(reason, detail)``. A Visit is one :meth:`records` has
        validated already."""
        if type(obj) is Visit:
            return obj
        try:
            return (onepass.visit_fast(obj, self.workers, self.instant)
                    or checks.visit_checked(obj, self.workers))
        except checks.Invalid as exc:
            return exc.reason, exc.detail

    def raw_object(self, raw: dict[str, Any] | tuple[bytes, int]) -> dict[str, Any]:
        """A record's object: itself, or decoded again from its message (:meth:`records`).
        The objects it returns are shared with other records of the message: read them
        only."""
        if type(raw) is not tuple:
            return raw  # type: ignore[return-value]
        value, index = raw
        doc = self._decoded(value)
        return doc[index] if type(doc) is list else doc  # type: ignore[no-any-return]


def validate_event(obj: dict[str, Any] | Event) -> Event | tuple[str, str]:
    """An :class:`Event`, or ``(reason, detail)``. An Event is one :meth:`Codec.records`
    has validated already. Events share nothing between messages, so this needs no codec."""
    if type(obj) is Event:
        return obj
    try:
        return onepass.event_fast(obj) or checks.event_checked(obj)
    except checks.Invalid as exc:
        return exc.reason, exc.detail
