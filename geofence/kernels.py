"""Numba kernels for the location decision: arrays in, arrays out, no Python objects.

Distances are metres on a sphere of the Earth's mean radius. Circles use the haversine
distance to the centre. Polygons are projected onto a local equirectangular plane centred on
the fix (the error is below 0.1% of the distance within a few kilometres of the fix, at any
latitude away from the poles: a fence is tens to hundreds of metres across), where the
even-odd rule decides inside (so holes work) and the nearest edge gives the distance to the
boundary. A bounding-box pre-filter skips the crossing test for fixes outside a polygon's
exterior ring.

Kernels are compiled with ``cache=True`` (a restarted worker loads the machine code from
``__pycache__`` instead of compiling again) and ``nogil=True`` (a caller may run them in a
thread while the event loop goes on).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

EARTH_RADIUS_M = 6_371_008.8
M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0

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


@njit(cache=True, nogil=True, inline="always")
def _haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp * 0.5) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl * 0.5) ** 2
    return 2.0 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@njit(cache=True, nogil=True, inline="always")
def _valid_fix(lat: float, lon: float) -> bool:
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return False
    if lat < -90.0 or lat > 90.0 or lon < -180.0 or lon > 180.0:
        return False
    return not (lat == 0.0 and lon == 0.0)


@njit(cache=True, nogil=True, inline="always")
def _verdict(s: float, a: float, k: float) -> tuple[int, float]:
    if not (math.isfinite(s) and math.isfinite(a)) or a < 0.0:
        return INVALID, np.nan
    m = k * a
    if s < -m:
        return INSIDE, m
    if s > m:
        return OUTSIDE, m
    return UNCERTAIN, m


# Floating-point licences for the polygon loops: reassociation lets the minimum be
# vectorised; no licence to assume away NaN or infinity. NumPy's error model drops the
# ZeroDivisionError branch Numba otherwise puts on every float division, which alone kept
# the distance loop scalar.
_POLYGON_FASTMATH = {"reassoc", "contract", "arcp", "nsz"}


@njit(cache=True, nogil=True, fastmath=_POLYGON_FASTMATH, error_model="numpy")
def _ring_min_d2(lat: float, lon: float, kx: float, ky: float, a: int, b: int,
                 vlon: np.ndarray, vlat: np.ndarray) -> float:
    """Squared distance (m²) from the fix to the nearest edge of ring vertices a:b."""
    best = np.inf
    for j in range(a, b - 1):
        # In the plane centred on the fix (the fix is the origin).
        x1 = (vlon[j] - lon) * kx
        y1 = (vlat[j] - lat) * ky
        dx = (vlon[j + 1] - vlon[j]) * kx
        dy = (vlat[j + 1] - vlat[j]) * ky
        # Nearest point of the segment; the tiny term keeps a zero-length edge finite.
        t = min(1.0, max(0.0, -(x1 * dx + y1 * dy) / (dx * dx + dy * dy + 1e-300)))
        px = x1 + t * dx
        py = y1 + t * dy
        best = min(best, px * px + py * py)
    return best


@njit(cache=True, nogil=True)
def _ring_crossings(lat: float, lon: float, a: int, b: int, vlon: np.ndarray,
                    vlat: np.ndarray) -> int:
    """Edges of ring vertices a:b that the ray from the fix along +x crosses (even-odd
    rule). Degrees are used as they are: scaling an axis by a positive factor leaves the
    sign tests unchanged."""
    crossings = 0
    for j in range(a, b - 1):
        x1 = vlon[j] - lon
        y1 = vlat[j] - lat
        y2 = vlat[j + 1] - lat
        dx = vlon[j + 1] - vlon[j]
        dy = y2 - y1
        # The edge straddles y = 0 and its intercept is at x > 0 (sign of the cross
        # product, no division).
        crossings += ((y1 > 0.0) != (y2 > 0.0)) & ((x1 * dy - y1 * dx) * dy > 0.0)
    return crossings


@njit(cache=True, nogil=True)
def _polygon_signed_m(lat: float, lon: float, fence: int, ring_start: np.ndarray,
                      vert_start: np.ndarray, vlon: np.ndarray, vlat: np.ndarray,
                      bbox: np.ndarray) -> float:
    kx = math.cos(math.radians(lat)) * M_PER_DEG
    ky = M_PER_DEG
    # Outside the exterior ring's box: outside the polygon, no crossing test needed.
    may_be_inside = (bbox[fence, 0] <= lon <= bbox[fence, 2]
                     and bbox[fence, 1] <= lat <= bbox[fence, 3])
    crossings = 0
    best = np.inf
    for r in range(ring_start[fence], ring_start[fence + 1]):
        a = vert_start[r]
        b = vert_start[r + 1]
        best = min(best, _ring_min_d2(lat, lon, kx, ky, a, b, vlon, vlat))
        if may_be_inside:
            crossings += _ring_crossings(lat, lon, a, b, vlon, vlat)
    dist = math.sqrt(best)
    return -dist if crossings & 1 else dist


@njit(cache=True, nogil=True)
def circle_signed_m(lat: np.ndarray, lon: np.ndarray, clat: np.ndarray, clon: np.ndarray,
                    radius_m: np.ndarray) -> np.ndarray:
    """Per fix ``i``, distance to the boundary of circle ``i``: negative inside, NaN if the
    fix is invalid. The arrays are aligned: one fence per fix."""
    n = lat.shape[0]
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        if _valid_fix(lat[i], lon[i]):
            out[i] = _haversine_m(lat[i], lon[i], clat[i], clon[i]) - radius_m[i]
        else:
            out[i] = np.nan
    return out


@njit(cache=True, nogil=True)
def classify_circles(lat: np.ndarray, lon: np.ndarray, accuracy_m: np.ndarray,
                     clat: np.ndarray, clon: np.ndarray, radius_m: np.ndarray,
                     k: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Circle distance and decision fused in one pass: ``(codes, signed_m, margin_m)``."""
    n = lat.shape[0]
    codes = np.empty(n, dtype=np.int8)
    signed = np.empty(n, dtype=np.float64)
    margins = np.empty(n, dtype=np.float64)
    for i in range(n):
        s = np.nan
        if _valid_fix(lat[i], lon[i]):
            s = _haversine_m(lat[i], lon[i], clat[i], clon[i]) - radius_m[i]
        c, m = _verdict(s, accuracy_m[i], k)
        codes[i] = c
        signed[i] = s
        margins[i] = m
    return codes, signed, margins


@njit(cache=True, nogil=True)
def signed_distance_m(lat: np.ndarray, lon: np.ndarray, fence_of: np.ndarray,
                      kind: np.ndarray, clat: np.ndarray, clon: np.ndarray,
                      radius_m: np.ndarray, ring_start: np.ndarray, vert_start: np.ndarray,
                      vlon: np.ndarray, vlat: np.ndarray, bbox: np.ndarray) -> np.ndarray:
    """Distance from each fix to its fence's boundary: negative inside, positive outside.

    ``fence_of[i]`` is the fence of fix ``i``. A circle fence ``f`` is ``clat[f], clon[f],
    radius_m[f]``; a polygon fence's rings are ``ring_start[f]:ring_start[f + 1]``, a ring's
    vertices (closed, lon/lat) ``vert_start[r]:vert_start[r + 1]``, and ``bbox[f]`` is its
    exterior's (min lon, min lat, max lon, max lat). NaN for an invalid fix.
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
            out[i] = _polygon_signed_m(lat[i], lon[i], f, ring_start, vert_start, vlon, vlat,
                                       bbox)
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
        c, m = _verdict(signed_m[i], accuracy_m[i], k)
        codes[i] = c
        margins[i] = m
    return codes, margins
