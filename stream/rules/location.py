"""Location: ``location_mismatch`` and ``location_unverified``.

A GPS fix is judged against the visit's fence (a circle, or a GeoJSON polygon) with its
accuracy taken into account (``geofence.classify``: one kernel call for every fix of a
batch): ``outside`` raises location_mismatch; ``uncertain`` (the fix's error circle
straddles the fence) or ``invalid`` raises location_unverified with the reason
``accuracy_too_poor``. A telephony check-in must come from a number on the roster, and an
NFC or QR check-in must carry a tag on the roster, else location_unverified. The audit the
seed policy asks for ("staff logged in and out at the correct locations") is the evidence
each escalation carries: distance, margin, accuracy and fence.
"""

from __future__ import annotations

import math
from typing import Any

from geofence import FenceSet, classify
from geofence.fences import Decision, PolygonCache, classify_circles
from stream.contract import Event, Source
from stream.contract.records import Escalation
from stream.rules.book import EscalationBook
from stream.settings import Settings
from stream.state.visit import VisitState

# What the geofence says of every fix inside its fence: only the verdict of those is read
# (judge() is asked about the others), so one object stands for all of them and the short
# path tells them by identity.
INSIDE = Decision("inside", math.nan, math.nan)

# Polygon fences projected into their planes, by roster record: a fence is prepared once,
# not for every fix against it.
_POLYGONS_HELD = 2048


class Location:
    def __init__(self, settings: Settings, book: EscalationBook) -> None:
        self.book = book
        self.default_accuracy_m = settings.default_gps_accuracy_m
        self._polygons = PolygonCache(size=_POLYGONS_HELD)

    def locate(self, fixes: list[tuple[Event, VisitState, Source]]) -> list[Decision | None]:
        """One geofence kernel call for every GPS fix of a batch's matched events
        ``(event, visit, source)``; None for other methods."""
        decisions: list[Decision | None] = [None] * len(fixes)
        gps = [i for i, (ev, _, _) in enumerate(fixes) if ev.method == "gps"]
        if not gps:
            return decisions
        default = self.default_accuracy_m
        lat = [fixes[i][0].lat for i in gps]
        lon = [fixes[i][0].lon for i in gps]
        acc = [default if (a := fixes[i][0].accuracy_m) is None else a for i in gps]
        visits = [fixes[i][1].visit for i in gps]
        if all(v.polygon is None for v in visits):
            found = classify_circles(lat, lon, acc, [v.lat for v in visits],
                                     [v.lon for v in visits], [v.radius_m for v in visits],
                                     inside=INSIDE)
        else:
            fences = FenceSet()
            fence_of = [fences.add_circle(v.lat, v.lon, v.radius_m) if v.polygon is None
                        else fences.add_prepared(self._polygons.get(v.polygon), v.lat, v.lon)
                        for v in visits]
            found = classify(fences, fence_of, lat, lon, acc, inside=INSIDE)
        for i, d in zip(gps, found, strict=True):
            decisions[i] = d
        return decisions

    def judge(self, vs: VisitState, ev: Event, decision: Decision | None,
              now: float) -> list[Escalation]:
        """What a check-in or check-out that is not a fix inside its fence raises."""
        v = vs.visit
        evidence: dict[str, Any] = {"event_id": ev.event_id, "event_type": ev.type,
                                    "method": ev.method, "worker_id": ev.worker_id}
        if ev.method == "gps" and decision is not None:
            evidence.update(
                distance_to_fence_m=round(decision.distance_m, 1),
                margin_m=round(decision.margin_m, 1),
                accuracy_m=ev.accuracy_m if ev.accuracy_m is not None
                else self.default_accuracy_m,
                accuracy_assumed=ev.accuracy_m is None,
                fence="polygon" if v.polygon is not None else "circle",
                verdict=decision.verdict)
            if v.polygon is None:
                evidence["radius_m"] = v.radius_m
            if decision.verdict == "outside":
                return self.book.open(vs, "location_mismatch", ev.occurred_at, now, evidence)
            if decision.verdict in ("uncertain", "invalid"):
                evidence["reason"] = "accuracy_too_poor"
                return self.book.open(vs, "location_unverified", ev.occurred_at, now, evidence)
            return []
        if ev.method == "telephony":
            known = {_digits(p) for p in v.client_phones}
            if _digits(ev.caller_number or "") not in known:
                evidence["reason"] = "caller_not_on_roster"
                return self.book.open(vs, "location_unverified", ev.occurred_at, now, evidence)
        elif ev.method in ("nfc", "qr") and ev.tag_id not in v.nfc_tags:
            evidence["reason"] = "tag_not_on_roster"
            return self.book.open(vs, "location_unverified", ev.occurred_at, now, evidence)
        return []


def _digits(number: str) -> str:
    return "".join(c for c in number if c.isdigit())
