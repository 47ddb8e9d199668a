"""The message contract: raw bytes in, validated records or rejections out.

Bad input is data: every function here returns either a record or a :class:`Rejection`
carrying the reason, a human-readable detail and the raw bytes, so the dead-letter path is
ordinary code and the worker never raises on input.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import datetime
from sys import intern
from typing import Annotated, Any, Literal

import msgspec
import orjson

from stream.timeutil import AwareDatetime, parse_instant

SCHEMA_VERSION = 1

RISK_LEVELS = ("low", "medium", "high", "critical")
EVENT_TYPES = ("check_in", "check_out")
METHODS = ("gps", "telephony", "nfc", "qr", "manual")
VISIT_STATUSES = ("scheduled", "cancelled")

# A visit longer than this is a roster error (the EVV aggregators' rule: at most 25 hours).
MAX_VISIT_S = 25 * 3600.0
DEFAULT_RADIUS_M = 200.0
# Longest identifier accepted: ids are keys, not documents.
_MAX_ID_LEN = 200
_THRESHOLDS = ("late_after_s", "missed_after_s", "short_long_after_s", "no_checkout_after_s")
# The types the one-pass decode checks (see "the one-pass path" below).
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_ID_LEN)]
_Threshold = Annotated[float, msgspec.Meta(gt=0, le=MAX_VISIT_S)]
_Lat = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
_Lon = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]


# The per-record classes are msgspec structs the garbage collector does not track
# (gc=False): one of each is built for every record, a worker holds a million visits, and
# the collector walked every tracked one at each collection (settle_heap: a sixth of a
# roster load's time went to that walk). They hold strings, numbers, tuples of them and
# decoded JSON, never themselves, so they can be part of no reference cycle. They are not
# frozen: a frozen class pays for it in every __init__.
class Source(msgspec.Struct, gc=False, array_like=True):
    """Where a record came from: enough to find its bytes again and to tell a replay.
    Written in a changelog as ``[topic, partition, offset, index]`` (``array_like``)."""

    topic: str
    partition: int
    offset: int
    index: int = 0

    def as_list(self) -> list[Any]:
        return [self.topic, self.partition, self.offset, self.index]

    @classmethod
    def from_list(cls, v: list[Any]) -> Source:
        return cls(str(v[0]), int(v[1]), int(v[2]), int(v[3]))

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition,
                "offset": self.offset, "index": self.index}


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    detail: str
    raw: bytes
    source: Source


class _Record(msgspec.Struct, gc=False, eq=False):
    """A validated record: two are equal when their fields are, whatever ``raw`` they came
    from (the last field, in every record class)."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and _fields(self)[:-1] == _fields(other)[:-1]

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]


_fields = msgspec.structs.astuple


class Visit(_Record, array_like=True):
    """One scheduled visit, validated. Instants are epoch seconds, UTC. Worker ids are
    interned (here and in the marks a visit holds, not in events, most of which are
    garbage once applied): a worker has many visits a day, and a tracked visit would
    otherwise hold its own copy of each id, as would each check-in. A changelog
    writes it as the array of its fields (``array_like``; stream/state.py)."""

    visit_id: str
    client_id: str
    worker_ids: tuple[str, ...]
    start: float
    end: float
    lat: float
    lon: float
    radius_m: float = DEFAULT_RADIUS_M
    # Polygon rings as ((lon, lat), ...) tuples: the exterior first, then holes.
    polygon: tuple[tuple[tuple[float, float], ...], ...] | None = None
    risk_level: str = "medium"
    lives_alone: bool = False
    cognitive_impairment: bool = False
    time_critical: bool = False
    client_phones: tuple[str, ...] = ()
    nfc_tags: tuple[str, ...] = ()
    contract_id: str | None = None
    late_after_s: float | None = None
    missed_after_s: float | None = None
    short_long_after_s: float | None = None
    no_checkout_after_s: float | None = None
    cancelled: bool = False
    # The record as received: its decoded object, or ``(message value, index)`` when it was
    # validated straight from the bytes (raw_object). None once it is in the changelog.
    raw: dict[str, Any] | tuple[bytes, int] | None = msgspec.field(default_factory=dict)


class Event(_Record):
    """One check-in or check-out, validated.

    The one-pass path decodes a message's events straight into this struct, whose types
    are the wire's: ``occurred_at`` arrives as the aware datetime the decode parsed and is
    held as its epoch seconds once the struct's checks pass (:func:`_event_wire`); one
    struct an event instead of a wire struct and a copy of it."""

    event_id: _Id
    type: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    client_id: _Id
    worker_id: _Id
    occurred_at: AwareDatetime | float
    # A literal: the decode checks it, and every event shares its method's one string
    # (a visit's mark holds it).
    method: Literal[METHODS]  # type: ignore[valid-type]
    visit_id: _Id | None = None
    lat: _Lat | None = None
    lon: _Lon | None = None
    accuracy_m: Annotated[float, msgspec.Meta(ge=0.0, le=1_000_000.0)] | None = None
    caller_number: str | None = None
    tag_id: str | None = None
    gateway_id: str | None = None
    # Its decoded object, or ``(message value, index)`` (raw_object). Set after a decode,
    # whatever the message held under the name (which no producer writes).
    raw: dict[str, Any] | tuple[bytes, int] | None = msgspec.field(default=None,
                                                                     name="\u00a0raw")


class _Invalid(Exception):  # internal control flow: it never escapes this module
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def split_message(value: bytes | None,
                  source: Source) -> tuple[list[dict[str, Any]], list[Rejection]]:
    """Decode one message value into its objects; a bad message is one rejection."""
    raw = value or b""
    try:
        doc = orjson.loads(raw)  # orjson refuses invalid UTF-8 itself
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return [], [Rejection("invalid_utf8", str(bad)[:200], raw, source)]
        return [], [Rejection("invalid_json", str(exc)[:200], raw, source)]
    items = doc if isinstance(doc, list) else [doc]
    rejections: list[Rejection] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            src = Source(source.topic, source.partition, source.offset, i)
            rejections.append(Rejection("not_an_object", f"item {i} is {type(item).__name__}",
                                        orjson.dumps(item), src))
            items[i] = {}  # keep indexes aligned; an empty dict is never routed
    return items, rejections


def routing_key(obj: dict[str, Any]) -> str | None:
    """The client id a record is routed by, or None when it has none usable."""
    cid = obj.get("client_id")
    if isinstance(cid, str) and 0 < len(cid) <= _MAX_ID_LEN:
        return cid
    return None


def validate_visit(obj: dict[str, Any] | Visit) -> Visit | tuple[str, str]:
    """A :class:`Visit`, or ``(reason, detail)``. A Visit is one :func:`fast_records` has
    validated already."""
    if type(obj) is Visit:
        return obj
    try:
        return _visit(obj)
    except _Invalid as exc:
        return exc.reason, exc.detail


def validate_event(obj: dict[str, Any] | Event) -> Event | tuple[str, str]:
    """An :class:`Event`, or ``(reason, detail)``. An Event is one :func:`fast_records` has
    validated already."""
    if type(obj) is Event:
        return obj
    try:
        return _event(obj)
    except _Invalid as exc:
        return exc.reason, exc.detail


def _visit(obj: dict[str, Any]) -> Visit:
    return _visit_fast(obj) or _visit_checked(obj)


# ---- the one-pass path --------------------------------------------------------------------
# A well-formed record is decoded and type-checked in one C call (msgspec) into a wire
# struct (for an event, the Event itself), from a message's bytes or from a decoded
# object; what the types cannot say (two distinct workers, instants that parse, an end
# after the start, a point off (0, 0), the method's own fields) is checked on the struct.
# A record either passes all of that and becomes the same Visit or Event the full checks
# build, or is left to the full checks, which name the reason when there is one. The
# structs are short-lived and never part of a cycle, so the collector does not track them
# (gc=False).


class _WireLocation(msgspec.Struct, gc=False):
    lat: _Lat
    lon: _Lon


class _WireVisit(msgspec.Struct, gc=False):
    visit_id: _Id
    client_id: _Id
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
    client_phones: list[str] | None = None
    nfc_tags: list[str] | None = None
    contract_id: str | None = None
    late_after_s: _Threshold | None = None
    missed_after_s: _Threshold | None = None
    short_long_after_s: _Threshold | None = None
    no_checkout_after_s: _Threshold | None = None


_VISITS = msgspec.json.Decoder(list[_WireVisit] | _WireVisit)
_EVENTS = msgspec.json.Decoder(list[Event] | Event)
_UNDECODED = (msgspec.MsgspecError, ValueError)  # a Unicode error is a ValueError


def fast_records(value: bytes | None, roster: bool) -> list[Visit | Event | None] | None:
    """A message's records through the one-pass path, in order: each a Visit (``roster``)
    or an Event, or ``None`` for one the full checks must see. ``None`` for the whole
    message when any of its records does not have the wire types: :func:`split_message`
    then decodes it. Each record's ``raw`` is ``(value, index)``: its object is decoded
    again only if it is rejected later (:func:`raw_object`)."""
    if not value:
        return None
    try:
        wire = (_VISITS if roster else _EVENTS).decode(value)
    except _UNDECODED:
        return None
    check = _visit_wire if roster else _event_wire
    if type(wire) is not list:
        return [check(wire, (value, 0))]
    return [check(w, (value, i)) for i, w in enumerate(wire)]


def raw_object(raw: dict[str, Any] | tuple[bytes, int]) -> dict[str, Any]:
    """A record's object: itself, or decoded again from its message (:func:`fast_records`).
    The objects it returns are shared with other records of the message: read them only."""
    if type(raw) is not tuple:
        return raw  # type: ignore[return-value]
    value, index = raw
    doc = _decoded(value)
    return doc[index] if type(doc) is list else doc  # type: ignore[no-any-return]


# The last messages decoded again: the records of a message are as a rule rejected, or left
# waiting for their roster, together, and each decoding the whole message made that
# quadratic in its size (a 1,000-event message left waiting took 0.9 ms an event in
# process). A message value is a bytes object, whose hash Python computes once. Four
# messages' objects are held at most: a few MB each at the largest message size.
_decoded = functools.lru_cache(maxsize=4)(orjson.loads)


def _visit_fast(obj: dict[str, Any]) -> Visit | None:
    """The well-formed roster record with a circular fence, in one pass; ``None`` when any
    field needs a closer look. It accepts only what :func:`_visit_checked` accepts, and
    leaves everything else (polygons among it) to it."""
    try:
        wire = msgspec.convert(obj, _WireVisit)
    except msgspec.MsgspecError:
        return None
    return _visit_wire(wire, obj)


# A roster's visits start and end at a few thousand distinct instants (on the minute or the
# quarter hour, over a day or a week), so each is parsed once; a check-in's device time is
# as a rule its own and is parsed every time.
_roster_instant = functools.lru_cache(maxsize=1 << 14)(parse_instant)


def _visit_wire(w: _WireVisit, raw: Any) -> Visit | None:
    workers = w.worker_ids
    if w.geofence is not None or (len(workers) == 2 and workers[0] == workers[1]):
        return None
    loc = w.location
    lat, lon = loc.lat, loc.lon
    if lat == 0.0 and lon == 0.0:
        return None
    start, end = _roster_instant(w.scheduled_start), _roster_instant(w.scheduled_end)
    if start is None or end is None or not 0 < end - start <= MAX_VISIT_S:
        return None
    phones, tags = w.client_phones, w.nfc_tags
    # Positional, in the fields' order.
    return Visit(w.visit_id, w.client_id, interned_workers(workers), start, end, lat, lon,
                 w.geofence_radius_m, None, w.risk_level, w.lives_alone or False,
                 w.cognitive_impairment or False, w.time_critical or False,
                 () if phones is None else tuple(phones), () if tags is None else tuple(tags),
                 w.contract_id, w.late_after_s, w.missed_after_s, w.short_long_after_s,
                 w.no_checkout_after_s, w.status == "cancelled", raw)


def interned_workers(workers: list[str]) -> tuple[str, ...]:
    """A visit's worker ids, interned, as a tuple that visits with the same workers share.

    A roster has a few workers for every hundred visits: sharing one tuple per worker (or
    pair) saves a tuple a visit (56 bytes), and that tuple's walk by the collector when a
    roster batch settles (:func:`stream.runtime.settle_heap`). Written out for one or two,
    as ``tuple(map(intern, ...))`` cost 190 ns where interning each costs 45."""
    if len(workers) == 1:
        w = workers[0]
        held = _ONE_WORKER.get(w)
        if held is None:
            if len(_ONE_WORKER) >= _WORKERS_HELD:
                _ONE_WORKER.clear()  # a bound, not a cache policy: the ids stay valid
            held = _ONE_WORKER[w] = (intern(w),)
        return held
    pair = (workers[0], workers[1])
    held = _TWO_WORKERS.get(pair)
    if held is None:
        if len(_TWO_WORKERS) >= _WORKERS_HELD:
            _TWO_WORKERS.clear()
        held = _TWO_WORKERS[pair] = (intern(pair[0]), intern(pair[1]))
    return held


# The shared tuples, by worker id (or pair). Bounded: a provider has thousands of workers,
# a nation hundreds of thousands; past the bound they are shared again from scratch.
_WORKERS_HELD = 1 << 20
_ONE_WORKER: dict[str, tuple[str]] = {}
_TWO_WORKERS: dict[tuple[str, str], tuple[str, str]] = {}


def _visit_checked(obj: dict[str, Any]) -> Visit:
    visit_id = _id(obj, "visit_id")
    client_id = _id(obj, "client_id")
    workers = _required(obj, "worker_ids")
    if not isinstance(workers, list) or not all(isinstance(w, str) and w for w in workers):
        raise _Invalid("wrong_type", "worker_ids must be a list of strings")
    if not 1 <= len(workers) <= 2 or len(set(workers)) != len(workers):
        raise _Invalid("invalid_value", "worker_ids must hold 1 or 2 distinct ids")
    start = _instant(obj, "scheduled_start")
    end = _instant(obj, "scheduled_end")
    if end <= start:
        raise _Invalid("end_before_start", "scheduled_end must be after scheduled_start")
    if end - start > MAX_VISIT_S:
        raise _Invalid("visit_too_long", "a visit lasts at most 25 hours")
    loc = _required(obj, "location")
    if not isinstance(loc, dict):
        raise _Invalid("wrong_type", "location must be an object {lat, lon}")
    lat, lon = _coordinates(loc.get("lat"), loc.get("lon"), "location")
    radius = obj.get("geofence_radius_m", DEFAULT_RADIUS_M)
    if not _is_number(radius) or not 0 < radius <= 100_000:
        raise _Invalid("invalid_value", "geofence_radius_m must be a number in (0, 100000]")
    polygon = _polygon(obj["geofence"]) if obj.get("geofence") is not None else None
    risk = obj.get("risk_level", "medium")
    if risk not in RISK_LEVELS:
        raise _Invalid("invalid_value", f"risk_level must be one of {RISK_LEVELS}")
    status = obj.get("status", "scheduled")
    if status not in VISIT_STATUSES:
        raise _Invalid("invalid_value", f"status must be one of {VISIT_STATUSES}")
    thresholds = {}
    for name in _THRESHOLDS:
        v = obj.get(name)
        if v is not None and (not _is_number(v) or not 0 < v <= MAX_VISIT_S):
            raise _Invalid("invalid_value", f"{name} must be a positive number of seconds")
        thresholds[name] = None if v is None else float(v)
    contract_id = obj.get("contract_id")
    if contract_id is not None and not isinstance(contract_id, str):
        raise _Invalid("wrong_type", "contract_id must be a string")
    return Visit(
        visit_id=visit_id, client_id=client_id, worker_ids=interned_workers(workers),
        start=start, end=end, lat=lat, lon=lon, radius_m=float(radius), polygon=polygon,
        risk_level=risk, lives_alone=_flag(obj, "lives_alone"),
        cognitive_impairment=_flag(obj, "cognitive_impairment"),
        time_critical=_flag(obj, "time_critical"),
        client_phones=_strings(obj, "client_phones"), nfc_tags=_strings(obj, "nfc_tags"),
        contract_id=contract_id, cancelled=status == "cancelled", raw=obj, **thresholds,
    )


def _event(obj: dict[str, Any]) -> Event:
    return _event_fast(obj) or _event_checked(obj)


def _event_fast(obj: dict[str, Any]) -> Event | None:
    """The well-formed event, in one pass; ``None`` when any field needs a closer look.

    It accepts only what :func:`_event_checked` accepts, and leaves everything else to it,
    which then finds the reason to reject (or accepts, e.g. a telephony check-in that also
    carries a malformed latitude, which only a GPS fix is judged by).
    """
    try:
        wire = msgspec.convert(obj, Event)
    except msgspec.MsgspecError:
        return None
    return _event_wire(wire, obj)


def _event_wire(w: Event, raw: Any) -> Event | None:
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
        if caller is None or not 0 < len(caller) <= _MAX_ID_LEN:
            return None
        w.lat = w.lon = w.accuracy_m = w.tag_id = None
    elif method == "nfc" or method == "qr":
        tag = w.tag_id
        if tag is None or not 0 < len(tag) <= _MAX_ID_LEN:
            return None
        w.lat = w.lon = w.accuracy_m = w.caller_number = None
    elif method == "manual":
        w.lat = w.lon = w.accuracy_m = w.caller_number = w.tag_id = None
    else:
        return None
    w.occurred_at = occurred.timestamp()  # parsed by the decode, as parse_instant does
    w.raw = raw
    return w


def _event_checked(obj: dict[str, Any]) -> Event:
    event_id = _id(obj, "event_id")
    etype = _required(obj, "type")
    if etype not in EVENT_TYPES:
        raise _Invalid("invalid_value", f"type must be one of {EVENT_TYPES}")
    client_id = _id(obj, "client_id")
    worker_id = _id(obj, "worker_id")
    visit_id = obj.get("visit_id")
    if visit_id is not None:
        visit_id = _id(obj, "visit_id")
    occurred = _instant(obj, "occurred_at")
    method = _required(obj, "method")
    if method not in METHODS:
        raise _Invalid("invalid_value", f"method must be one of {METHODS}")
    method = METHODS[METHODS.index(method)]  # the one string, as the decode gives it
    lat = lon = accuracy = None
    caller = tag = None
    if method == "gps":
        lat, lon = _coordinates(obj.get("lat"), obj.get("lon"), "event")
        accuracy = obj.get("accuracy_m")
        if accuracy is not None:
            if not _is_number(accuracy) or not 0 <= accuracy <= 1_000_000:
                raise _Invalid("invalid_value", "accuracy_m must be a non-negative number")
            accuracy = float(accuracy)
    elif method == "telephony":
        caller = _id(obj, "caller_number")
    elif method in ("nfc", "qr"):
        tag = _id(obj, "tag_id")
    gateway = obj.get("gateway_id")
    if gateway is not None and not isinstance(gateway, str):
        raise _Invalid("wrong_type", "gateway_id must be a string")
    return Event(event_id=event_id, type=etype, client_id=client_id, worker_id=worker_id,
                 occurred_at=occurred, method=method, visit_id=visit_id, lat=lat, lon=lon,
                 accuracy_m=accuracy, caller_number=caller, tag_id=tag, gateway_id=gateway,
                 raw=obj)


def _required(obj: dict[str, Any], name: str) -> Any:
    if name not in obj or obj[name] is None:
        raise _Invalid("missing_field", f"{name} is required")
    return obj[name]


def _id(obj: dict[str, Any], name: str) -> str:
    v = _required(obj, name)
    if not isinstance(v, str):
        raise _Invalid("wrong_type", f"{name} must be a string")
    if not 0 < len(v) <= _MAX_ID_LEN:
        raise _Invalid("invalid_value", f"{name} must be 1-{_MAX_ID_LEN} characters")
    return v


def _instant(obj: dict[str, Any], name: str) -> float:
    v = _required(obj, name)
    if not isinstance(v, str):
        raise _Invalid("wrong_type", f"{name} must be an RFC 3339 string")
    instant = parse_instant(v)
    if instant is None:
        raise _Invalid("invalid_time", f"{name} is not RFC 3339 with an offset")
    return instant


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _coordinates(lat: Any, lon: Any, where: str) -> tuple[float, float]:
    if lat is None or lon is None:
        raise _Invalid("missing_field", f"{where} needs lat and lon")
    if not _is_number(lat) or not _is_number(lon):
        raise _Invalid("invalid_coordinates", f"{where} lat/lon must be finite numbers")
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise _Invalid("invalid_coordinates", f"{where} lat/lon out of range")
    if lat == 0.0 and lon == 0.0:
        raise _Invalid("invalid_coordinates", f"{where} is the (0, 0) null-island fix")
    return float(lat), float(lon)


def _flag(obj: dict[str, Any], name: str) -> bool:
    v = obj.get(name, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise _Invalid("wrong_type", f"{name} must be a boolean")
    return v


def _strings(obj: dict[str, Any], name: str) -> tuple[str, ...]:
    v = obj.get(name)
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise _Invalid("wrong_type", f"{name} must be a list of strings")
    return tuple(v)


def _polygon(geo: Any) -> tuple[tuple[tuple[float, float], ...], ...]:
    if not isinstance(geo, dict) or geo.get("type") != "Polygon":
        raise _Invalid("invalid_value", "geofence must be a GeoJSON Polygon")
    rings = geo.get("coordinates")
    if not isinstance(rings, list) or not rings:
        raise _Invalid("invalid_value", "geofence needs coordinates")
    out = []
    for ring in rings:
        if not isinstance(ring, list) or len(ring) < 4:
            raise _Invalid("invalid_value", "a polygon ring needs at least 4 positions")
        pts = []
        for p in ring:
            if not isinstance(p, list) or len(p) < 2:
                raise _Invalid("invalid_value", "a position is [lon, lat]")
            lat, lon = _coordinates(p[1], p[0], "geofence")
            pts.append((lon, lat))
        if pts[0] != pts[-1]:
            raise _Invalid("invalid_value", "a polygon ring must be closed")
        out.append(tuple(pts))
    return tuple(out)
