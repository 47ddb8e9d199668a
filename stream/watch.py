"""Escalations printed for people, one line each, as they arrive."""

from __future__ import annotations

import sys
from typing import Any

import orjson

from stream.security import connection
from stream.settings import Settings
from stream.timeutil import format_instant, parse_instant, to_datetime

_COLOURS = {"P1": "\033[1;31m", "P2": "\033[31m", "P3": "\033[33m", "P4": "\033[36m"}
_RESOLVED = "\033[32m"
_RESET = "\033[0m"


def line(value: bytes | None, colour: bool = False) -> str | None:
    """The line of an escalation record's bytes; None for bytes that are not one (a
    corrupt or foreign record must not stop the watch)."""
    try:
        doc = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return None
    if type(doc) is not dict or not isinstance(doc.get("escalation_id"), str):
        return None
    try:
        return describe(doc, colour)
    except (TypeError, ValueError, AttributeError, KeyError):
        return None


def describe(e: dict[str, Any], colour: bool = False) -> str:
    """One line: when, what, how urgent, and the evidence that matters most; for a change
    to its case (revision 2 on, stream/rules/cases.py), what changed."""
    if e.get("revision", 1) > 1 and e.get("status") != "resolved":
        return _case_line(e, colour)
    at = e.get("resolved_at") if e.get("status") == "resolved" else e.get("detected_at")
    instant = parse_instant(at)
    clock = to_datetime(instant).strftime("%H:%M:%S") if instant is not None else "--:--:--"
    word = "RESOLVED" if e.get("status") == "resolved" else "RAISED  "
    ev = e.get("evidence", {})
    if e.get("status") == "resolved":
        detail = f"{e.get('resolution', '')}"
        if "lateness_s" in ev:
            detail += f", arrived {ev['lateness_s'] / 60:.1f} min after the start"
            if ev.get("delivery_delay_s", 0) > 60:
                detail += f" (event delivered {ev['delivery_delay_s'] / 60:.1f} min late)"
    else:
        detail = f"route {e.get('recommended_route')}"
        if "distance_to_fence_m" in ev:
            detail += (f", {ev['distance_to_fence_m']:.0f} m from the fence"
                       f" (95% margin {ev['margin_m']:.0f} m)")
        elif ev.get("reason"):
            detail += f", {ev['reason']}"
        elif ev.get("workers_absent"):
            detail += f", absent {','.join(ev['workers_absent'])}"
    line = (f"{clock}  {word}  {e.get('priority')}  {e.get('kind', ''):<20} "
            f"visit {e.get('visit_id')}  client {e.get('client_id')}  {detail}")
    if not colour:
        return line
    tint = _RESOLVED if e.get("status") == "resolved" else _COLOURS.get(e.get("priority", ""), "")
    return f"{tint}{line}{_RESET}"


def _case_line(e: dict[str, Any], colour: bool) -> str:
    """A case's change: its latest breach, verification or action, whichever came last."""
    case = e.get("case") or {}
    happened: list[tuple[float, str]] = []
    for b in e.get("breaches") or ():
        happened.append((parse_instant(b.get("detected_at")) or 0.0,
                         f"BREACH {b.get('stage')} (due {_clock(b.get('due'))}), level "
                         f"{b.get('level')}"))
    for h in case.get("history") or ():
        happened.append((parse_instant(h.get("received")) or 0.0,
                         f"{h.get('type')} by {h.get('by')}"))
    v = case.get("verification")
    if v:
        happened.append((parse_instant(v.get("received")) or 0.0,
                         f"recovery verified: {v.get('worker_id')} checked in"
                         + ("" if v.get("in_time") else " after the deadline")))
    for a in case.get("arrivals") or ():
        happened.append((parse_instant(a.get("checked_in_at")) or 0.0,
                         f"arrival kept as evidence: {a.get('worker_id')}"))
    at, what = max(happened, default=(0.0, "changed"))
    status = str(e.get("status", "")).upper()
    line = (f"{_clock(format_instant(at)) if at else '--:--:--'}  {status:<18}  "
            f"{e.get('priority')}  L{e.get('level', 1)}  {e.get('kind', ''):<20} "
            f"visit {e.get('visit_id')}  {what}")
    if not colour:
        return line
    tint = _COLOURS["P1"] if e.get("level", 1) > 1 else _COLOURS.get(e.get("priority", ""), "")
    return f"{tint}{line}{_RESET}"


def _clock(text: Any) -> str:
    instant = parse_instant(text)
    return to_datetime(instant).strftime("%H:%M:%S") if instant is not None else "--:--:--"


def watch(settings: Settings, *, from_beginning: bool = False) -> int:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(settings.topic_escalations,
                             **connection(settings),
                             auto_offset_reset="earliest" if from_beginning else "latest",
                             enable_auto_commit=False, group_id=None)
    colour = sys.stdout.isatty()
    try:
        for message in consumer:
            print(line(message.value, colour)
                  or f"(skipped a record that is not an escalation: partition "
                     f"{message.partition}, offset {message.offset})", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0
