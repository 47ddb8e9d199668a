"""A small region's visits around "now", with on-time, late, missed and wrong-place check-ins.

Built for the demo: deadlines are arranged to fall due in its first two minutes with the
default thresholds (late 15 min, missed 30 min after the start), so a person watching sees
escalations raised and resolved live. Deterministic for a seed and a start instant.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream.timeutil import format_instant

# A box over Norfolk, England: towns a care run covers by car.
REGION = (52.45, 0.95, 52.90, 1.70)  # south, west, north, east
_M_PER_DEG_LAT = 111_195.0

OUTCOMES = (
    ("on_time", 0.60),
    ("late", 0.12),
    ("missed", 0.06),
    ("wrong_place", 0.07),
    ("poor_fix", 0.04),
    ("unknown_phone", 0.03),
    ("wrong_worker", 0.03),
    ("offline_upload", 0.05),
)


@dataclass
class Feed:
    roster: list[dict[str, Any]]
    # (send at, event): each event is sent when the wall clock reaches its instant.
    events: list[tuple[float, dict[str, Any]]]
    # (send at, raw bytes, topic): input a gateway should never send.
    bad: list[tuple[float, bytes, str]] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)


def build_demo_feed(now: float, visits: int = 300, seed: int = 7) -> Feed:
    rng = random.Random(seed)
    clients = max(1, visits // 2)
    workers = [f"w-{i:03d}" for i in range(max(2, visits // 6))]
    homes = [(rng.uniform(REGION[0], REGION[2]), rng.uniform(REGION[1], REGION[3]))
             for _ in range(clients)]
    kinds = [k for k, _ in OUTCOMES]
    weights = [w for _, w in OUTCOMES]
    feed = Feed([], [])
    for i in range(visits):
        c = i % clients
        lat, lon = homes[c]
        outcome = rng.choices(kinds, weights)[0]
        start = _start_for(outcome, now, rng)
        minutes = rng.choice((30, 30, 45, 60))
        pair = rng.random() < 0.08
        rostered = rng.sample(workers, 2 if pair else 1)
        vid = f"v-{i:04d}"
        cid = f"c-{c:04d}"
        visit = {
            "visit_id": vid, "client_id": cid, "worker_ids": rostered,
            "scheduled_start": format_instant(start),
            "scheduled_end": format_instant(start + minutes * 60),
            "location": {"lat": round(lat, 6), "lon": round(lon, 6)},
            "geofence_radius_m": 150,
            "risk_level": rng.choices(("low", "medium", "high", "critical"), (3, 5, 2, 1))[0],
            "time_critical": rng.random() < 0.2,
            "lives_alone": rng.random() < 0.35,
            "cognitive_impairment": rng.random() < 0.15,
            "client_phones": [f"01603 {c:06d}"],
            "nfc_tags": [f"tag-{cid}"],
            "contract_id": rng.choice(("norfolk-cc", "private")),
        }
        feed.roster.append(visit)
        feed.outcomes[vid] = outcome
        if outcome == "missed":
            continue
        for n, worker in enumerate(rostered):
            _visit_events(feed, visit, outcome, worker, workers, start, minutes, now, rng, n)
    feed.events.sort(key=lambda e: e[0])
    feed.bad += [
        (now + 2, b'{"event_id": "broken", "type": "check_in", ', "ecm.events"),
        (now + 3, orjson.dumps({"event_id": "no-time", "type": "check_in", "client_id": "c-0000",
                                "worker_id": workers[0], "method": "manual"}), "ecm.events"),
        (now + 4, orjson.dumps({"event_id": "null-island", "type": "check_in",
                                "client_id": "c-0001", "worker_id": workers[1],
                                "occurred_at": format_instant(now), "method": "gps",
                                "lat": 0.0, "lon": 0.0, "accuracy_m": 5}), "ecm.events"),
    ]
    if feed.events:
        _at, first = feed.events[0]
        feed.bad.append((now + 5, orjson.dumps(first), "ecm.events"))  # a gateway's retry
    return feed


def _start_for(outcome: str, now: float, rng: random.Random) -> float:
    if outcome in ("late", "offline_upload"):
        return now - 900 + rng.uniform(5, 100)  # late deadline in the first 100 s
    if outcome == "missed":
        return now - 1800 + rng.uniform(10, 110)  # missed deadline in the first 110 s
    return now + rng.uniform(-40 * 60, 3 * 60)


def _visit_events(feed: Feed, visit: dict[str, Any], outcome: str, worker: str,
                  workers: list[str], start: float, minutes: int, now: float,
                  rng: random.Random, n: int) -> None:
    home = (visit["location"]["lat"], visit["location"]["lon"])
    cid = visit["client_id"]
    if outcome == "wrong_worker" and n == 0:
        worker = rng.choice([w for w in workers if w not in visit["worker_ids"]])
    arrive = start + rng.uniform(-300, 300)
    send_in = max(now, arrive)
    if outcome == "late":
        arrive = start + 900 + rng.uniform(15, 70)
        send_in = arrive
    elif outcome == "offline_upload":
        arrive = start + rng.uniform(0, 120)
        send_in = start + 900 + rng.uniform(15, 60)  # the phone comes back online
    method = rng.choices(("gps", "telephony", "nfc"), (75, 15, 10))[0]
    if outcome in ("wrong_place", "poor_fix"):
        method = "gps"
    if outcome == "unknown_phone":
        method = "telephony"
    base = {"client_id": cid, "visit_id": visit["visit_id"], "worker_id": worker,
            "gateway_id": f"gw-{method}"}
    check_in = {"event_id": f"{visit['visit_id']}-{worker}-in", "type": "check_in",
                "occurred_at": format_instant(arrive), "method": method, **base}
    if method == "gps":
        if outcome == "wrong_place":
            lat, lon = _offset(home, rng.uniform(800, 3000), rng)
            acc = rng.uniform(5, 25)
        elif outcome == "poor_fix":
            lat, lon = _offset(home, 150 + rng.uniform(-20, 40), rng)
            acc = rng.uniform(120, 300)
        else:
            lat, lon = _offset(home, rng.uniform(0, 60), rng)
            acc = rng.uniform(4, 30)
        check_in.update(lat=round(lat, 6), lon=round(lon, 6), accuracy_m=round(acc, 1))
    elif method == "telephony":
        check_in["caller_number"] = ("07700 900" + f"{rng.randrange(1000):03d}"
                                     if outcome == "unknown_phone" else visit["client_phones"][0])
    else:
        check_in["tag_id"] = visit["nfc_tags"][0]
    feed.events.append((send_in, check_in))
    leave = max(arrive + 60, start + minutes * 60 + rng.uniform(-240, 240))
    check_out = dict(check_in, event_id=f"{visit['visit_id']}-{worker}-out", type="check_out",
                     occurred_at=format_instant(leave))
    if method == "gps":
        check_out.update(lat=round(home[0], 6), lon=round(home[1], 6), accuracy_m=8.0)
    feed.events.append((max(now, leave), check_out))


def _offset(home: tuple[float, float], metres: float, rng: random.Random) -> tuple[float, float]:
    bearing = rng.uniform(0, 2 * math.pi)
    dlat = metres * math.cos(bearing) / _M_PER_DEG_LAT
    dlon = metres * math.sin(bearing) / (_M_PER_DEG_LAT * math.cos(math.radians(home[0])))
    return home[0] + dlat, home[1] + dlon
