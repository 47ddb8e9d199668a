"""Numba kernels for the location decision: arrays in, arrays out, no Python objects.

Distances are metres on a sphere of the Earth's mean radius. Circles use the haversine
distance to the centre. A polygon is projected once, when its fence is built, onto a local
equirectangular plane centred on its exterior's bounding box (metres east and north; the
scale error at a fix d metres north or south of the centre is about d * tan(lat) / R, below
0.1% of the distance within 3 km of a fence at latitudes up to 60 degrees: a fence is tens
to hundreds of metres across). In that plane the even-odd rule decides inside (so holes
work) and the nearest edge gives the distance to the boundary, in one branch-free pass over
the edges with each edge's 1 / length^2 stored, so the loop has no division and vectorises.
A bounding-box pre-filter settles fixes outside a polygon's exterior ring as outside.

The polygon pass runs in single precision on vertices stored as float32 plane metres: eight
edges per 256-bit vector instead of four, and half the bytes read per fence, which is what
bounds a check once a region's fences outgrow the core's cache. Near a fence, where plane
coordinates are hundreds of metres, that costs about 1e-4 m; the stated tolerance against
the double-precision reference (``POLYGON_TOLERANCE_M`` plus ``POLYGON_TOLERANCE_REL`` of
the distance) is ten times that, and a thousand times finer than the projection's own scale
error or any phone's accuracy. Circles stay in double precision.

Kernels are compiled with ``cache=True`` (a restarted worker loads the machine code from
``__pycache__`` instead of compiling again) and ``nogil=True`` (a caller may run them in a
thread while the event loop goes on).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

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


# Floating-point licences for signed_distance_m: reassociation lets the minimum and the
# count over a ring's edges be vectorised; no licence to assume away NaN or infinity (the
# validity checks rely on them). NumPy's error model drops the ZeroDivisionError branch.
_POLYGON_FASTMATH = {"reassoc", "contract", "arcp", "nsz"}
_NO_DISTANCE = np.int32(0x7F800000)  # the bits of float32 +inf
_U1 = np.uint64(1)
_F0 = np.float32(0.0)
_F1 = np.float32(1.0)

# Agreement of the polygon kernel with the double-precision reference: absolute metres plus
# a fraction of the distance (a far fix's plane coordinates are large, so float32 rounding
# grows with them).
POLYGON_TOLERANCE_M = 1e-3
POLYGON_TOLERANCE_REL = 1e-6


@intrinsic
def _float_bits(typingctx, x):  # Numba's intrinsic signature: unused arguments included
    """The bits of a float32 as an int32, in a register (LLVM's bitcast)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


@intrinsic
def _bits_float(typingctx, x):
    """The float32 whose bits an int32 holds."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


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


@njit(cache=True, nogil=True, fastmath=_POLYGON_FASTMATH, error_model="numpy")
def signed_distance_m(lat: np.ndarray, lon: np.ndarray, fence_of: np.ndarray,
                      kind: np.ndarray, clat: np.ndarray, clon: np.ndarray,
                      radius_m: np.ndarray, ring_start: np.ndarray, vert_start: np.ndarray,
                      vx: np.ndarray, vy: np.ndarray, vinv: np.ndarray,
                      plane: np.ndarray) -> np.ndarray:
    """Distance from each fix to its fence's boundary: negative inside, positive outside.

    ``fence_of[i]`` is the fence of fix ``i``. A circle fence ``f`` is ``clat[f], clon[f],
    radius_m[f]``; a polygon fence's rings are ``ring_start[f]:ring_start[f + 1]``, a ring's
    vertices (closed) ``vert_start[r]:vert_start[r + 1]`` in ``vx, vy`` (float32): metres
    east and north in the fence's plane, with ``vinv`` (float32) the inverse squared length
    of the edge from each vertex (0 for a zero-length edge). ``plane[f]`` is the plane's
    origin (lon, lat), metres per degree of longitude there, and the exterior's box in the
    plane (min x, min y, max x, max y); :class:`geofence.fences.FenceSet` builds all of
    them. NaN for an invalid fix.
    """
    # The polygon work is written out here rather than in helpers: passing arrays to a
    # helper costs two atomic reference-count updates per array per call, which weighed
    # more than the arithmetic. Indices into the vertex arrays are unsigned, so Numba adds
    # no wraparound for negative indices, which would keep the edge loop from vectorising.
    # Every value in the edge loop is 32 bits wide, so a vector holds eight edges: the
    # crossing count too, a float32 that a masked add of one raises (a count of int32 would
    # be widened to int64, halving the vector).
    n = lat.shape[0]
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        f = fence_of[i]
        if not _valid_fix(lat[i], lon[i]):
            out[i] = np.nan
            continue
        if kind[f] == FENCE_CIRCLE:
            out[i] = _haversine_m(lat[i], lon[i], clat[f], clon[f]) - radius_m[f]
            continue
        # The fix in the fence's plane.
        px64 = (lon[i] - plane[f, 0]) * plane[f, 2]
        py64 = (lat[i] - plane[f, 1]) * M_PER_DEG
        px = np.float32(px64)
        py = np.float32(py64)
        least = _NO_DISTANCE
        crossings = _F0
        for r in range(ring_start[f], ring_start[f + 1]):
            a = np.uint64(vert_start[r])
            edges = np.uint64(vert_start[r + 1]) - a - _U1
            for k in range(edges):
                j = a + np.uint64(k)
                x1 = vx[j] - px
                y1 = vy[j] - py
                y2 = vy[j + _U1] - py
                dx = vx[j + _U1] - vx[j]
                dy = vy[j + _U1] - vy[j]
                # Nearest point of the edge; vinv is 1 / |edge|^2, 0 for a zero-length one.
                t = -(x1 * dx + y1 * dy) * vinv[j]
                t = min(max(t, _F0), _F1)
                qx = x1 + t * dx
                qy = y1 + t * dy
                # LLVM does not vectorise a floating-point minimum here, so it is taken
                # over the bits as int32: non-negative floats order as their bits do.
                least = min(least, _float_bits(qx * qx + qy * qy))
                # Even-odd rule: the edge straddles the ray along +x from the fix and meets
                # it at x > 0 (sign of the cross product, no division). Each vertex's y is
                # one stored number, so the edges either side of a vertex agree on which
                # side of the ray it lies.
                crosses = ((y1 > _F0) != (y2 > _F0)) & ((x1 * dy - y1 * dx) * dy > _F0)
                crossings += _F1 if crosses else _F0
        dist = math.sqrt(np.float64(_bits_float(least)))
        # Outside the exterior's box the fix is outside, whatever the count says.
        in_box = (plane[f, 3] <= px64 <= plane[f, 5] and plane[f, 4] <= py64 <= plane[f, 6])
        out[i] = -dist if in_box and np.int64(crossings) & 1 else dist
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
