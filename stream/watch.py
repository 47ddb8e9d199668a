"""Escalations printed for people, one line each, as they arrive."""

from __future__ import annotations

import sys
from typing import Any

import orjson

from stream.settings import Settings
from stream.timeutil import parse_instant, to_datetime

_COLOURS = {"P1": "\033[1;31m", "P2": "\033[31m", "P3": "\033[33m", "P4": "\033[36m"}
_RESOLVED = "\033[32m"
_RESET = "\033[0m"


def describe(e: dict[str, Any], colour: bool = False) -> str:
    """One line: when, what, how urgent, and the evidence that matters most."""
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


def watch(settings: Settings, *, from_beginning: bool = False) -> int:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(settings.topic_escalations,
                             bootstrap_servers=settings.bootstrap_servers,
                             auto_offset_reset="earliest" if from_beginning else "latest",
                             enable_auto_commit=False, group_id=None)
    colour = sys.stdout.isatty()
    try:
        for message in consumer:
            print(describe(orjson.loads(message.value), colour), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0
