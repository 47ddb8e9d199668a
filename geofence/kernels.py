"""Numba kernels for the location decision: arrays in, arrays out, no Python objects.

Distances are metres on a sphere of the Earth's mean radius. Circles use the haversine
distance to the centre. Polygons are projected onto a local equirectangular plane centred on
the fix (error well under a metre across a home's fence at any latitude outside the poles),
where the even-odd rule decides inside (so holes work) and the nearest edge gives the
distance to the boundary.

Kernels are compiled with ``cache=True`` (a restarted worker loads the machine code from
``__pycache__`` instead of compiling again) and ``nogil=True`` (a caller may run them in a
thread while the event loop goes on).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

EARTH_RADIUS_M = 6_371_008.8
_M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0

FENCE_CIRCLE = 0
FENCE_POLYGON = 1

INSIDE = 0
OUTSIDE = 1
UNCERTAIN = 2
INVALID = 3

# Phones report accuracy as the radius of 68% confidence (Android's documented meaning;
# iOS's horizontalAccuracy is used the same way). Treating the error as a circular normal,
# the radius holding a fraction p is sigma * sqrt(-2 ln(1 - p)): 1.509 sigma for 68%, 2.448
# sigma for 95%. The 95% radius is therefore 2.448 / 1.509 = 1.622 times the reported
# accuracy, and that is the margin a decision keeps from the boundary.
ACCURACY_68_TO_95 = 1.622


@njit(cache=True, nogil=True)
def _haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp * 0.5) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl * 0.5) ** 2
    return 2.0 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@njit(cache=True, nogil=True)
def _valid_fix(lat: float, lon: float) -> bool:
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return False
    if lat < -90.0 or lat > 90.0 or lon < -180.0 or lon > 180.0:
        return False
    return not (lat == 0.0 and lon == 0.0)


@njit(cache=True, nogil=True)
def _polygon_signed_m(lat: float, lon: float, fence: int, ring_start: np.ndarray,
                      vert_start: np.ndarray, vlon: np.ndarray, vlat: np.ndarray) -> float:
    kx = math.cos(math.radians(lat)) * _M_PER_DEG
    ky = _M_PER_DEG
    inside = False
    best = np.inf
    for r in range(ring_start[fence], ring_start[fence + 1]):
        v0 = vert_start[r]
        v1 = vert_start[r + 1]
        for j in range(v0, v1 - 1):
            x1 = (vlon[j] - lon) * kx
            y1 = (vlat[j] - lat) * ky
            x2 = (vlon[j + 1] - lon) * kx
            y2 = (vlat[j + 1] - lat) * ky
            if (y1 > 0.0) != (y2 > 0.0):
                xi = x1 + (0.0 - y1) * (x2 - x1) / (y2 - y1)
                if xi > 0.0:
                    inside = not inside
            dx = x2 - x1
            dy = y2 - y1
            seg = dx * dx + dy * dy
            t = 0.0
            if seg > 0.0:
                t = -(x1 * dx + y1 * dy) / seg
                t = min(1.0, max(0.0, t))
            px = x1 + t * dx
            py = y1 + t * dy
            d = px * px + py * py
            if d < best:
                best = d
    dist = math.sqrt(best)
    return -dist if inside else dist


@njit(cache=True, nogil=True)
def signed_distance_m(lat: np.ndarray, lon: np.ndarray, fence_of: np.ndarray,
                      kind: np.ndarray, clat: np.ndarray, clon: np.ndarray,
                      radius_m: np.ndarray, ring_start: np.ndarray, vert_start: np.ndarray,
                      vlon: np.ndarray, vlat: np.ndarray) -> np.ndarray:
    """Distance from each fix to its fence's boundary: negative inside, positive outside.

    ``fence_of[i]`` is the fence of fix ``i``. A circle fence ``f`` is ``clat[f], clon[f],
    radius_m[f]``; a polygon fence's rings are ``ring_start[f]:ring_start[f + 1]`` and a
    ring's vertices (closed, lon/lat) ``vert_start[r]:vert_start[r + 1]``. NaN for an
    invalid fix.
    """
    n = lat.shape[0]
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        f = fence_of[i]
        if not _valid_fix(lat[i], lon[i]):
            out[i] = np.nan
        elif kind[f] == FENCE_CIRCLE:
            out[i] = _haversine_m(lat[i], lon[i], clat[f], clon[f]) - radius_m[f]
        else:
            out[i] = _polygon_signed_m(lat[i], lon[i], f, ring_start, vert_start, vlon, vlat)
    return out


@njit(cache=True, nogil=True)
def decide(signed_m: np.ndarray, accuracy_m: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
    """Three-valued decision per fix, and the margin it used (metres).

    The margin is ``k * accuracy_m`` (with ``k = ACCURACY_68_TO_95`` the 95% radius of the
    fix). ``inside`` when the fix is deeper inside than the margin, ``outside`` when it is
    further outside than the margin, ``uncertain`` in the band between, ``invalid`` for a NaN
    distance or accuracy.
    """
    n = signed_m.shape[0]
    codes = np.empty(n, dtype=np.int8)
    margins = np.empty(n, dtype=np.float64)
    for i in range(n):
        s = signed_m[i]
        a = accuracy_m[i]
        if not (math.isfinite(s) and math.isfinite(a)) or a < 0.0:
            codes[i] = INVALID
            margins[i] = np.nan
            continue
        m = k * a
        margins[i] = m
        if s < -m:
            codes[i] = INSIDE
        elif s > m:
            codes[i] = OUTSIDE
        else:
            codes[i] = UNCERTAIN
    return codes, margins
