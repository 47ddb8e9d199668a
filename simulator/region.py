"""A region's service users and workers: homes clustered around towns in a county."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# Norfolk, England, and its towns (lat, lon, relative size): where a provider's runs go.
NORFOLK = (52.35, 0.15, 52.99, 1.75)
TOWNS = (
    ("Norwich", 52.6309, 1.2974, 10), ("Great Yarmouth", 52.6083, 1.7305, 4),
    ("King's Lynn", 52.7543, 0.3976, 4), ("Thetford", 52.4128, 0.7510, 3),
    ("Dereham", 52.6810, 0.9400, 2), ("Wymondham", 52.5700, 1.1160, 2),
    ("North Walsham", 52.8210, 1.3870, 2), ("Cromer", 52.9310, 1.3010, 1),
    ("Fakenham", 52.8300, 0.8470, 1), ("Swaffham", 52.6480, 0.6870, 1),
    ("Diss", 52.3760, 1.1080, 1), ("Attleborough", 52.5180, 1.0190, 1),
)
_M_PER_DEG = 111_195.0
RISKS = ("low", "medium", "high", "critical")
RISK_WEIGHTS = (30, 45, 20, 5)
# Contracts with their own thresholds (seconds): a council at 15/30 minutes, one that
# calls a visit missed at 20 minutes, private clients at the defaults.
CONTRACTS = (
    ("county-council", None, None),
    ("health-trust", 600.0, 1200.0),
    ("private", None, None),
)


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    town: int
    lat: float
    lon: float
    risk_level: str
    lives_alone: bool
    cognitive_impairment: bool
    phone: str
    tag: str
    contract: int


@dataclass(frozen=True, slots=True)
class Worker:
    worker_id: str
    town: int


@dataclass
class Region:
    clients: list[Client]
    workers: list[Worker]

    def workers_by_town(self) -> dict[int, list[Worker]]:
        out: dict[int, list[Worker]] = {}
        for w in self.workers:
            out.setdefault(w.town, []).append(w)
        return out


def build_region(rng: random.Random, clients: int, workers: int) -> Region:
    weights = [t[3] for t in TOWNS]
    people = []
    for i in range(clients):
        town = rng.choices(range(len(TOWNS)), weights)[0]
        _, tlat, tlon, size = TOWNS[town]
        spread = 1500.0 + 1200.0 * math.sqrt(size)  # metres: bigger towns spread wider
        lat, lon = offset(tlat, tlon, abs(rng.gauss(0, spread)), rng.uniform(0, 2 * math.pi))
        people.append(Client(
            client_id=f"c{i:07d}", town=town, lat=round(lat, 6), lon=round(lon, 6),
            risk_level=rng.choices(RISKS, RISK_WEIGHTS)[0],
            lives_alone=rng.random() < 0.45, cognitive_impairment=rng.random() < 0.2,
            phone=f"01{rng.randrange(200, 999)} {rng.randrange(100000, 999999)}",
            tag=f"tag-{i:07d}", contract=rng.randrange(len(CONTRACTS))))
    # Workers in proportion to each town's clients, at least one per town with clients.
    per_town = [sum(1 for c in people if c.town == t) for t in range(len(TOWNS))]
    staff = []
    n = 0
    for t, count in enumerate(per_town):
        if not count:
            continue
        k = max(1, round(workers * count / max(1, clients)))
        for _ in range(k):
            staff.append(Worker(f"w{n:05d}", t))
            n += 1
    return Region(people, staff)


def offset(lat: float, lon: float, metres: float, bearing: float) -> tuple[float, float]:
    dlat = metres * math.cos(bearing) / _M_PER_DEG
    dlon = metres * math.sin(bearing) / (_M_PER_DEG * math.cos(math.radians(lat)))
    return lat + dlat, lon + dlon


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance: plenty for travel times across a county."""
    x = math.radians(lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    y = math.radians(lat2 - lat1)
    return 6_371_000.0 * math.hypot(x, y)
