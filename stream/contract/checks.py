"""The full checks: the contract's reference.

Every record the one-pass decoder (:mod:`stream.contract.onepass`) cannot take whole comes
here, and this is where a rejection's reason is named. The one-pass decoder accepts only
what these checks accept, and builds the same record
(``tests/unit/stream/contract/test_checks_and_onepass.py`` holds the twins equal). Bad
input is data: each check returns a record or raises :class:`Invalid`, which
:class:`stream.contract.codec.Codec` turns into ``(reason, detail)``.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from stream.contract.bounds import Bounds
from stream.contract.records import (
    DEFAULT_RADIUS_M,
    EVENT_TYPES,
    MAX_ID_LEN,
    MAX_LIST,
    MAX_POSITIONS,
    MAX_VISIT_S,
    METHODS,
    RISK_LEVELS,
    THRESHOLDS,
    VISIT_STATUSES,
    Event,
    Rejection,
    Source,
    Visit,
    WorkerIds,
)
from stream.timeutil import parse_instant


class Invalid(Exception):  # control flow inside the contract: it never escapes it
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def split_message(value: bytes | None, source: Source, bounds: Bounds
                  ) -> tuple[list[dict[str, Any] | None], list[Rejection]]:
    """Decode one message value into its objects, in order: a record that is not an object,
    or exceeds the bounds, is rejected and stands as None; a message that is not JSON, or
    holds more records than an array may, is one rejection."""
    raw = value or b""
    try:
        doc = orjson.loads(raw)  # orjson refuses invalid UTF-8 itself
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return [], [Rejection("invalid_utf8", str(bad)[:200], raw, source)]
        return [], [Rejection("invalid_json", str(exc)[:200], raw, source)]
    items = doc if type(doc) is list else [doc]
    if len(items) > bounds.max_items:
        return [], [Rejection("value_too_large", f"{len(items)} records in one message; at "
                              f"most {bounds.max_items}", raw, source)]
    rejections: list[Rejection] = []
    for i, item in enumerate(items):
        failure = (("not_an_object", f"item {i} is {type(item).__name__}")
                   if type(item) is not dict else bounds.exceeded(item))
        if failure is not None:
            src = Source(source.topic, source.partition, source.offset, i)
            rejections.append(Rejection(*failure, _encoded(item, raw), src))
            items[i] = None  # keeps the indexes aligned
    return items, rejections


def _encoded(item: Any, message: bytes) -> bytes:
    """A rejected item's bytes: itself re-encoded, or its whole message where it cannot be
    (nested deeper than the encoder goes)."""
    try:
        return orjson.dumps(item)
    except orjson.JSONEncodeError:
        return message


def routing_key(obj: dict[str, Any]) -> str | None:
    """The client id a record is routed by, or None when it has none usable."""
    cid = obj.get("client_id")
    if isinstance(cid, str) and 0 < len(cid) <= MAX_ID_LEN:
        return cid
    return None


def visit_checked(obj: dict[str, Any], workers: WorkerIds, bounds: Bounds) -> Visit:
    visit_id = _id(obj, "visit_id")
    client_id = _id(obj, "client_id")
    ids = _required(obj, "worker_ids")
    if not isinstance(ids, list) or not all(isinstance(w, str) and w for w in ids):
        raise Invalid("wrong_type", "worker_ids must be a list of strings")
    if not 1 <= len(ids) <= 2 or len(set(ids)) != len(ids):
        raise Invalid("invalid_value", "worker_ids must hold 1 or 2 distinct ids")
    start = _instant(obj, "scheduled_start", bounds)
    end = _instant(obj, "scheduled_end", bounds)
    if end <= start:
        raise Invalid("end_before_start", "scheduled_end must be after scheduled_start")
    if end - start > MAX_VISIT_S:
        raise Invalid("visit_too_long", "a visit lasts at most 25 hours")
    loc = _required(obj, "location")
    if not isinstance(loc, dict):
        raise Invalid("wrong_type", "location must be an object {lat, lon}")
    lat, lon = _coordinates(loc.get("lat"), loc.get("lon"), "location")
    radius = obj.get("geofence_radius_m", DEFAULT_RADIUS_M)
    if not _is_number(radius) or not 0 < radius <= 100_000:
        raise Invalid("invalid_value", "geofence_radius_m must be a number in (0, 100000]")
    polygon = _polygon(obj["geofence"]) if obj.get("geofence") is not None else None
    risk = obj.get("risk_level", "medium")
    if risk not in RISK_LEVELS:
        raise Invalid("invalid_value", f"risk_level must be one of {RISK_LEVELS}")
    status = obj.get("status", "scheduled")
    if status not in VISIT_STATUSES:
        raise Invalid("invalid_value", f"status must be one of {VISIT_STATUSES}")
    thresholds = {}
    for name in THRESHOLDS:
        v = obj.get(name)
        if v is not None and (not _is_number(v) or not 0 < v <= MAX_VISIT_S):
            raise Invalid("invalid_value", f"{name} must be a positive number of seconds")
        thresholds[name] = None if v is None else float(v)
    contract_id = _optional_id(obj, "contract_id")
    return Visit(
        visit_id=visit_id, client_id=client_id, worker_ids=workers(ids),
        start=start, end=end, lat=lat, lon=lon, radius_m=float(radius), polygon=polygon,
        risk_level=risk, lives_alone=_flag(obj, "lives_alone"),
        cognitive_impairment=_flag(obj, "cognitive_impairment"),
        time_critical=_flag(obj, "time_critical"),
        client_phones=_strings(obj, "client_phones"), nfc_tags=_strings(obj, "nfc_tags"),
        contract_id=contract_id, cancelled=status == "cancelled", raw=obj, **thresholds,
    )


def event_checked(obj: dict[str, Any], bounds: Bounds) -> Event:
    event_id = _id(obj, "event_id")
    etype = _required(obj, "type")
    if etype not in EVENT_TYPES:
        raise Invalid("invalid_value", f"type must be one of {EVENT_TYPES}")
    client_id = _id(obj, "client_id")
    worker_id = _id(obj, "worker_id")
    visit_id = obj.get("visit_id")
    if visit_id is not None:
        visit_id = _id(obj, "visit_id")
    occurred = _instant(obj, "occurred_at", bounds)
    method = _required(obj, "method")
    if method not in METHODS:
        raise Invalid("invalid_value", f"method must be one of {METHODS}")
    method = METHODS[METHODS.index(method)]  # the one string, as the decode gives it
    lat = lon = accuracy = None
    caller = tag = None
    if method == "gps":
        lat, lon = _coordinates(obj.get("lat"), obj.get("lon"), "event")
        accuracy = obj.get("accuracy_m")
        if accuracy is not None:
            if not _is_number(accuracy) or not 0 <= accuracy <= 1_000_000:
                raise Invalid("invalid_value", "accuracy_m must be a non-negative number")
            accuracy = float(accuracy)
    elif method == "telephony":
        caller = _id(obj, "caller_number")
    elif method in ("nfc", "qr"):
        tag = _id(obj, "tag_id")
    gateway = _optional_id(obj, "gateway_id")
    return Event(event_id=event_id, type=etype, client_id=client_id, worker_id=worker_id,
                 occurred_at=occurred, method=method, visit_id=visit_id, lat=lat, lon=lon,
                 accuracy_m=accuracy, caller_number=caller, tag_id=tag, gateway_id=gateway,
                 raw=obj)


def _required(obj: dict[str, Any], name: str) -> Any:
    if name not in obj or obj[name] is None:
        raise Invalid("missing_field", f"{name} is required")
    return obj[name]


def _id(obj: dict[str, Any], name: str) -> str:
    v = _required(obj, name)
    if not isinstance(v, str):
        raise Invalid("wrong_type", f"{name} must be a string")
    if not 0 < len(v) <= MAX_ID_LEN:
        raise Invalid("invalid_value", f"{name} must be 1-{MAX_ID_LEN} characters")
    return v


def _optional_id(obj: dict[str, Any], name: str) -> str | None:
    v = obj.get(name)
    if v is None:
        return None
    if not isinstance(v, str):
        raise Invalid("wrong_type", f"{name} must be a string")
    if len(v) > MAX_ID_LEN:
        raise Invalid("invalid_value", f"{name} must be at most {MAX_ID_LEN} characters")
    return v


def _instant(obj: dict[str, Any], name: str, bounds: Bounds) -> float:
    v = _required(obj, name)
    if not isinstance(v, str):
        raise Invalid("wrong_type", f"{name} must be an RFC 3339 string")
    instant = parse_instant(v)
    if instant is None:
        raise Invalid("invalid_time", f"{name} is not RFC 3339 with an offset")
    if not bounds.instant_in_range(instant):
        raise Invalid("invalid_time", f"{name} is outside the years {bounds.earliest_year}-"
                      f"{bounds.latest_year}")
    return instant


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _coordinates(lat: Any, lon: Any, where: str) -> tuple[float, float]:
    if lat is None or lon is None:
        raise Invalid("missing_field", f"{where} needs lat and lon")
    if not _is_number(lat) or not _is_number(lon):
        raise Invalid("invalid_coordinates", f"{where} lat/lon must be finite numbers")
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise Invalid("invalid_coordinates", f"{where} lat/lon out of range")
    if lat == 0.0 and lon == 0.0:
        raise Invalid("invalid_coordinates", f"{where} is the (0, 0) null-island fix")
    return float(lat), float(lon)


def _flag(obj: dict[str, Any], name: str) -> bool:
    v = obj.get(name, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise Invalid("wrong_type", f"{name} must be a boolean")
    return v


def _strings(obj: dict[str, Any], name: str) -> tuple[str, ...]:
    v = obj.get(name)
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise Invalid("wrong_type", f"{name} must be a list of strings")
    if len(v) > MAX_LIST or any(len(s) > MAX_ID_LEN for s in v):
        raise Invalid("invalid_value", f"{name} holds at most {MAX_LIST} strings of at most "
                      f"{MAX_ID_LEN} characters")
    return tuple(v)


def _polygon(geo: Any) -> tuple[tuple[tuple[float, float], ...], ...]:
    if not isinstance(geo, dict) or geo.get("type") != "Polygon":
        raise Invalid("invalid_value", "geofence must be a GeoJSON Polygon")
    rings = geo.get("coordinates")
    if not isinstance(rings, list) or not rings:
        raise Invalid("invalid_value", "geofence needs coordinates")
    if sum(len(ring) if isinstance(ring, list) else 0 for ring in rings) > MAX_POSITIONS:
        raise Invalid("invalid_value", f"a geofence has at most {MAX_POSITIONS} positions")
    out = []
    for ring in rings:
        if not isinstance(ring, list) or len(ring) < 4:
            raise Invalid("invalid_value", "a polygon ring needs at least 4 positions")
        pts = []
        for p in ring:
            if not isinstance(p, list) or len(p) < 2:
                raise Invalid("invalid_value", "a position is [lon, lat]")
            lat, lon = _coordinates(p[1], p[0], "geofence")
            pts.append((lon, lat))
        if pts[0] != pts[-1]:
            raise Invalid("invalid_value", "a polygon ring must be closed")
        out.append(tuple(pts))
    return tuple(out)
