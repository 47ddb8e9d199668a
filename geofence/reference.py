"""Plain reference implementations of the kernels: pure Python and shapely 2, one fix at a
time. Slow on purpose; the property tests hold the kernels to them."""

from __future__ import annotations

import math
from collections.abc import Sequence

from shapely.geometry import Point, Polygon

from geofence.kernels import EARTH_RADIUS_M, INSIDE, INVALID, M_PER_DEG, OUTSIDE, UNCERTAIN

Ring = Sequence[tuple[float, float]]


def valid_fix(lat: float, lon: float) -> bool:
    return (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90
            and -180 <= lon <= 180 and not (lat == 0 and lon == 0))


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def circle_signed_m(lat: float, lon: float, clat: float, clon: float, radius_m: float) -> float:
    if not valid_fix(lat, lon):
        return math.nan
    return haversine_m(lat, lon, clat, clon) - radius_m


def polygon_signed_m(lat: float, lon: float, rings: Sequence[Ring]) -> float:
    """Signed distance with shapely, in the polygon's plane: equirectangular, centred on
    the exterior's bounding box (the kernels' plane)."""
    if not valid_fix(lat, lon):
        return math.nan
    lons = [x for x, _ in rings[0]]
    lats = [y for _, y in rings[0]]
    lon0 = (min(lons) + max(lons)) / 2
    lat0 = (min(lats) + max(lats)) / 2
    kx = math.cos(math.radians(lat0)) * M_PER_DEG

    def plane(ring: Ring) -> list[tuple[float, float]]:
        return [((x - lon0) * kx, (y - lat0) * M_PER_DEG) for x, y in ring]

    poly = Polygon(plane(rings[0]), [plane(r) for r in rings[1:]])
    fix = Point((lon - lon0) * kx, (lat - lat0) * M_PER_DEG)
    d = poly.boundary.distance(fix)
    return -d if poly.contains(fix) else d


def decide(signed_m: float, accuracy_m: float, k: float) -> tuple[int, float]:
    if not (math.isfinite(signed_m) and math.isfinite(accuracy_m)) or accuracy_m < 0:
        return INVALID, math.nan
    m = k * accuracy_m
    if signed_m < -m:
        return INSIDE, m
    if signed_m > m:
        return OUTSIDE, m
    return UNCERTAIN, m
