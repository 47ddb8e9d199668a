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
from datetime import UTC, datetime
from typing import Any

import orjson

from stream.contract import checks, onepass
from stream.contract.actions import action_checked
from stream.contract.bounds import Bounds
from stream.contract.records import Action, Event, Rejection, Source, Visit, WorkerIds
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

    def __init__(self, bounds: Bounds | None = None,
                 loads: Callable[[bytes], Any] = orjson.loads) -> None:
        self.bounds = bounds or Bounds()
        self.workers = WorkerIds()
        self.instant = functools.lru_cache(maxsize=_INSTANTS_HELD)(parse_instant)
        self._decoded = functools.lru_cache(maxsize=_MESSAGES_HELD)(loads)

    def records(self, value: bytes | None, roster: bool) -> list[Visit | Event | None] | None:
        """A message's records through the one-pass decoder (:func:`onepass.fast_records`)."""
        try:
            return onepass.fast_records(value, roster, self.workers, self.instant, self.bounds)
        except RecursionError:  # nested past the decoder's depth: the full parse names it
            return None

    def split(self, value: bytes | None,
              source: Source) -> tuple[list[dict[str, Any] | None], list[Rejection]]:
        """A message's objects (:func:`checks.split_message`), held to the bounds."""
        return checks.split_message(value, source, self.bounds)

    def visit(self, obj: dict[str, Any] | Visit) -> Visit | tuple[str, str]:
        """A :class:`Visit`, or ``(reason, detail)``. A Visit is one :meth:`records` has
        validated already."""
        if type(obj) is Visit:
            return obj
        try:
            return (onepass.visit_fast(obj, self.workers, self.instant, self.bounds)
                    or checks.visit_checked(obj, self.workers, self.bounds))
        except checks.Invalid as exc:
            return exc.reason, exc.detail

    def event(self, obj: dict[str, Any] | Event) -> Event | tuple[str, str]:
        """An :class:`Event`, or ``(reason, detail)``."""
        return validate_event(obj, self.bounds)

    def action(self, obj: dict[str, Any] | Action) -> Action | tuple[str, str]:
        """An :class:`Action` (stream/contract/actions.py), or ``(reason, detail)``."""
        if type(obj) is Action:
            return obj
        if type(obj) is not dict:
            return "wrong_type", "an action must be a JSON object"
        try:
            return action_checked(obj, self.bounds)
        except checks.Invalid as exc:
            return exc.reason, exc.detail

    def raw_object(self, raw: dict[str, Any] | tuple[bytes, int]) -> dict[str, Any]:
        """A record's object: itself, or decoded again from its message (:meth:`records`).
        The objects it returns are shared with other records of the message: read them
        only. Raises ``orjson.JSONDecodeError`` for a message the one-pass decoder took
        but the full parser refuses (a number beyond double range in a field the contract
        does not know): :meth:`raw_bytes` is the caller that must never fail."""
        if type(raw) is not tuple:
            return raw  # type: ignore[return-value]
        value, index = raw
        doc = self._decoded(value)
        return doc[index] if type(doc) is list else doc  # type: ignore[no-any-return]

    def raw_bytes(self, raw: dict[str, Any] | tuple[bytes, int]) -> bytes:
        """A rejected record's bytes, for its dead letter: its object re-encoded, or its
        whole message where that cannot be had."""
        try:
            return orjson.dumps(self.raw_object(raw))
        except (orjson.JSONDecodeError, orjson.JSONEncodeError):
            return raw[0] if type(raw) is tuple else b""  # type: ignore[return-value]


_DEFAULT_BOUNDS = Bounds()


def event_object(event: Event) -> dict[str, Any]:
    """The record an event stands for, from its fields alone (unknown fields, which the
    contract ignores, left out): how an event validated from its message's bytes is written
    to the changelog, whatever else its message held. Its instant to the microsecond, so
    that it reads back as the same number."""
    doc: dict[str, Any] = {
        "event_id": event.event_id, "type": event.type, "client_id": event.client_id,
        "worker_id": event.worker_id, "method": event.method,
        "occurred_at": datetime.fromtimestamp(event.occurred_at, tz=UTC).isoformat(
            timespec="microseconds")}
    for name in _OPTIONAL_EVENT_FIELDS:
        value = getattr(event, name)
        if value is not None:
            doc[name] = value
    return doc


_OPTIONAL_EVENT_FIELDS = ("visit_id", "lat", "lon", "accuracy_m", "caller_number", "tag_id",
                          "gateway_id")


def validate_event(obj: dict[str, Any] | Event,
                   bounds: Bounds = _DEFAULT_BOUNDS) -> Event | tuple[str, str]:
    """An :class:`Event`, or ``(reason, detail)``. An Event is one :meth:`Codec.records`
    has validated already. Events share nothing between messages, so this needs no codec."""
    if type(obj) is Event:
        return obj
    try:
        return onepass.event_fast(obj, bounds) or checks.event_checked(obj, bounds)
    except checks.Invalid as exc:
        return exc.reason, exc.detail
