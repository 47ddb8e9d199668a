"""Roster records and events for tests, with sensible defaults."""

from __future__ import annotations

import itertools
from typing import Any

from stream.timeutil import format_instant

HOME = (52.6309, 1.2974)  # a street in Norwich
T0 = 1_795_000_000.0  # 2026-11-18T11:06:40Z: a fixed instant, so tests never read the clock

_ids = itertools.count(1)


def visit(visit_id: str = "v1", *, client_id: str = "c1", workers: tuple[str, ...] = ("w1",),
          start: float = T0, minutes: float = 30, **extra: Any) -> dict[str, Any]:
    doc = {
        "visit_id": visit_id,
        "client_id": client_id,
        "worker_ids": list(workers),
        "scheduled_start": format_instant(start),
        "scheduled_end": format_instant(start + minutes * 60),
        "location": {"lat": HOME[0], "lon": HOME[1]},
        "client_phones": ["01603 000111"],
        "nfc_tags": ["tag-1"],
    }
    doc.update(extra)
    return doc


def event(type_: str = "check_in", *, at: float, visit_id: str | None = "v1",
          client_id: str = "c1", worker_id: str = "w1", method: str = "gps",
          lat: float = HOME[0], lon: float = HOME[1], accuracy_m: float | None = 10.0,
          event_id: str | None = None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": event_id or f"e{next(_ids)}",
        "type": type_,
        "client_id": client_id,
        "worker_id": worker_id,
        "occurred_at": format_instant(at),
        "method": method,
    }
    if visit_id is not None:
        doc["visit_id"] = visit_id
    if method == "gps":
        doc.update(lat=lat, lon=lon)
        if accuracy_m is not None:
            doc["accuracy_m"] = accuracy_m
    elif method == "telephony":
        doc["caller_number"] = extra.pop("caller_number", "01603 000111")
    elif method in ("nfc", "qr"):
        doc["tag_id"] = extra.pop("tag_id", "tag-1")
    doc.update(extra)
    return doc


def north_of_home(metres: float) -> tuple[float, float]:
    return HOME[0] + metres / 111_195.0, HOME[1]
