"""The one-pass decoder: the contract's fast twin, from a message's bytes.

A well-formed record is decoded and type-checked in one C call (msgspec) into a wire struct
(for an event, the Event itself), from a message's bytes or from a decoded object; what the
types cannot say (two distinct workers, instants that parse, an end after the start, a
point off (0, 0), the method's own fields) is checked on the struct. A record either passes
all of that and becomes the same Visit or Event the full checks
(:mod:`stream.contract.checks`) build, or is left to them, which name the reason when there
is one: the twins are held equal by
``tests/unit/stream/contract/test_checks_and_onepass.py``. The structs are short-lived and
never part of a cycle, so the collector does not track them (gc=False).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from stream.contract.bounds import Bounds
from stream.contract.records import (
    DEFAULT_RADIUS_M,
    MAX_ID_LEN,
    MAX_LIST,
    MAX_VISIT_S,
    RISK_LEVELS,
    VISIT_STATUSES,
    Event,
    Id,
    Lat,
    Lon,
    Threshold,
    Visit,
    WorkerIds,
)

# An RFC 3339 instant to epoch seconds, or None (a roster's instants are parsed through
# the codec's cache: see stream/contract/codec.py).
Instant = Callable[[str], float | None]


# A visit's phone numbers or tags.
_Strings = Annotated[list[Annotated[str, msgspec.Meta(max_length=MAX_ID_LEN)]],
                     msgspec.Meta(max_length=MAX_LIST)]


class _WireLocation(msgspec.Struct, gc=False):
    lat: Lat
    lon: Lon


class _WireVisit(msgspec.Struct, gc=False):
    visit_id: Id
    client_id: Id
    worker_ids: Annotated[list[Annotated[str, msgspec.Meta(min_length=1)]],
                          msgspec.Meta(min_length=1, max_length=2)]
    scheduled_start: str
    scheduled_end: str
    location: _WireLocation
    geofence_radius_m: Annotated[float, msgspec.Meta(gt=0, le=100_000)] = DEFAULT_RADIUS_M
    geofence: Any = None  # a polygon takes the full checks
    risk_level: Literal[RISK_LEVELS] = "medium"  # type: ignore[valid-type]
    status: Literal[VISIT_STATUSES] = "scheduled"  # type: ignore[valid-type]
    lives_alone: bool | None = None
    cognitive_impairment: bool | None = None
    time_critical: bool | None = None
    client_phones: _Strings | None = None
    nfc_tags: _Strings | None = None
    contract_id: Annotated[str, msgspec.Meta(max_length=MAX_ID_LEN)] | None = None
    late_after_s: Threshold | None = None
    missed_after_s: Threshold | None = None
    short_long_after_s: Threshold | None = None
    no_checkout_after_s: Threshold | None = None


_VISITS = msgspec.json.Decoder(list[_WireVisit] | _WireVisit)
_EVENTS = msgspec.json.Decoder(list[Event] | Event)
_UNDECODED = (msgspec.MsgspecError, ValueError)  # a Unicode error is a ValueError


def fast_records(value: bytes | None, roster: bool, workers: WorkerIds, instant: Instant,
                 bounds: Bounds) -> list[Visit | Event | None] | None:
    """A message's records through the one-pass path, in order: each a Visit (``roster``)
    or an Event, or ``None`` for one the full checks must see. ``None`` for the whole
    message when any of its records does not have the wire types: `checks.split_message`
    then decodes it. Each record's ``raw`` is ``(value, index)``: its object is decoded
    again only if it is rejected later (:meth:`stream.contract.codec.Codec.raw_object`)."""
    if not value:
        return None
    try:
        wire = (_VISITS if roster else _EVENTS).decode(value)
    except _UNDECODED:
        return None
    if roster:
        if type(wire) is not list:
            return [visit_wire(wire, (value, 0), workers, instant, bounds)]
        return [visit_wire(w, (value, i), workers, instant, bounds)
                for i, w in enumerate(wire)]
    if type(wire) is not list:
        return [event_wire(wire, (value, 0), bounds)]
    return [event_wire(w, (value, i), bounds) for i, w in enumerate(wire)]


def visit_fast(obj: dict[str, Any], workers: WorkerIds, instant: Instant,
               bounds: Bounds) -> Visit | None:
    """The well-formed roster record with a circular fence, in one pass; ``None`` when any
    field needs a closer look. It accepts only what the full checks
    (``checks.visit_checked``) accept, and leaves everything else (polygons among it) to
    them."""
    try:
        wire = msgspec.convert(obj, _WireVisit)
    except msgspec.MsgspecError:
        return None
    return visit_wire(wire, obj, workers, instant, bounds)


def visit_wire(w: _WireVisit, raw: Any, workers: WorkerIds, instant: Instant,
               bounds: Bounds) -> Visit | None:
    ids = w.worker_ids
    if w.geofence is not None or (len(ids) == 2 and ids[0] == ids[1]):
        return None
    loc = w.location
    lat, lon = loc.lat, loc.lon
    if lat == 0.0 and lon == 0.0:
        return None
    start, end = instant(w.scheduled_start), instant(w.scheduled_end)
    if (start is None or end is None or not 0 < end - start <= MAX_VISIT_S
            or start < bounds.earliest or end >= bounds.latest):
        return None
    phones, tags = w.client_phones, w.nfc_tags
    # Positional, in the fields' order.
    return Visit(w.visit_id, w.client_id, workers(ids), start, end, lat, lon,
                 w.geofence_radius_m, None, w.risk_level, w.lives_alone or False,
                 w.cognitive_impairment or False, w.time_critical or False,
                 () if phones is None else tuple(phones), () if tags is None else tuple(tags),
                 w.contract_id, w.late_after_s, w.missed_after_s, w.short_long_after_s,
                 w.no_checkout_after_s, w.status == "cancelled", raw)


def event_fast(obj: dict[str, Any], bounds: Bounds) -> Event | None:
    """The well-formed event, in one pass; ``None`` when any field needs a closer look.

    It accepts only what the full checks (``checks.event_checked``) accept, and leaves
    everything else to them, which then find the reason to reject (or accept, e.g. a
    telephony check-in that also carries a malformed latitude, which only a GPS fix is
    judged by).
    """
    try:
        wire = msgspec.convert(obj, Event)
    except msgspec.MsgspecError:
        return None
    return event_wire(wire, obj, bounds)


def event_wire(w: Event, raw: Any, bounds: Bounds) -> Event | None:
    """The decoded event, its checks passed and its instant made epoch seconds, or None."""
    occurred = w.occurred_at
    if type(occurred) is not datetime:
        return None  # a number: the full checks name it
    method = w.method
    if method == "gps":
        lat, lon = w.lat, w.lon
        if lat is None or lon is None or (lat == 0.0 and lon == 0.0):
            return None
        if w.caller_number is not None or w.tag_id is not None:
            w.caller_number = w.tag_id = None  # only a method's own fields are kept
    elif method == "telephony":
        caller = w.caller_number
        if caller is None or not 0 < len(caller) <= MAX_ID_LEN:
            return None
        w.lat = w.lon = w.accuracy_m = w.tag_id = None
    elif method == "nfc" or method == "qr":
        tag = w.tag_id
        if tag is None or not 0 < len(tag) <= MAX_ID_LEN:
            return None
        w.lat = w.lon = w.accuracy_m = w.caller_number = None
    elif method == "manual":
        w.lat = w.lon = w.accuracy_m = w.caller_number = w.tag_id = None
    else:
        return None
    at = occurred.timestamp()  # parsed by the decode, as parse_instant does
    if not bounds.earliest <= at < bounds.latest:
        return None
    w.occurred_at = at
    w.raw = raw
    return w
