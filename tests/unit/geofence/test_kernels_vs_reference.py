"""The kernels agree with the shapely / pure-Python reference on random fences and fixes.

Tolerance: circle distances agree within 1e-6 m (plus 1e-9 relative). Polygon distances,
computed in single precision, agree within ``kernels.POLYGON_TOLERANCE_M`` (1 mm) plus
``POLYGON_TOLERANCE_REL`` (one part in a million) of the distance; inside/outside is
compared only for fixes further than that from the boundary, where rounding cannot flip the
parity test. Fixes are generated on and near the boundary on purpose.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geofence import kernels, reference
from geofence.fences import FenceSet

ABS_M = 1e-6
REL = 1e-9

# Antimeridian-free regions: the UK and the contiguous US.
REGIONS = [(50.0, 58.5, -6.0, 1.8), (25.0, 48.5, -124.0, -67.0)]


@st.composite
def homes(draw):
    south, north, west, east = draw(st.sampled_from(REGIONS))
    return (draw(st.floats(south, north)), draw(st.floats(west, east)))


def _star(draw, lat, lon, n, r_lo, r_hi):
    """A simple polygon around (lat, lon): one vertex at a random angle in each of n equal
    sectors, at a random radius (metres), closed. With n >= 5 no gap between vertices
    reaches half a turn, so the centre is inside and at least r_lo * cos(72 deg) from the
    boundary: room for a hole of radius up to 0.3 * r_lo."""
    sector = 2 * math.pi / n
    angles = [sector * (i + draw(st.floats(0.0, 0.999))) for i in range(n)]
    kx = math.cos(math.radians(lat)) * kernels.M_PER_DEG
    ring = []
    for a in angles:
        r = draw(st.floats(r_lo, r_hi))
        ring.append((lon + r * math.cos(a) / kx, lat + r * math.sin(a) / kernels.M_PER_DEG))
    ring.append(ring[0])
    return ring


@st.composite
def polygon_and_fix(draw):
    lat, lon = draw(homes())
    outer = _star(draw, lat, lon, draw(st.integers(5, 40)), 60.0, 400.0)
    rings = [outer]
    if draw(st.booleans()):
        rings.append(list(reversed(_star(draw, lat, lon, draw(st.integers(5, 12)), 2.0, 17.0))))
    where = draw(st.sampled_from(["anywhere", "far", "edge", "vertex"]))
    if where in ("anywhere", "far"):
        d = (800.0 if where == "anywhere" else 100_000.0) / kernels.M_PER_DEG
        fix = (lat + draw(st.floats(-d, d)), lon + draw(st.floats(-d, d)))
    else:
        ring = draw(st.sampled_from(rings))
        j = draw(st.integers(0, len(ring) - 2))
        t = 0.0 if where == "vertex" else draw(st.floats(0, 1))
        x = ring[j][0] + t * (ring[j + 1][0] - ring[j][0])
        y = ring[j][1] + t * (ring[j + 1][1] - ring[j][1])
        eps = draw(st.floats(-1e-7, 1e-7))  # up to about a centimetre off the line
        fix = (y + eps, x - eps)
    return rings, fix


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= ABS_M + REL * max(abs(a), abs(b))


def _poly_tolerance(want: float) -> float:
    return kernels.POLYGON_TOLERANCE_M + kernels.POLYGON_TOLERANCE_REL * abs(want)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(polygon_and_fix(), st.floats(0, 500))
def test_polygon_kernel_matches_shapely(case, accuracy):
    rings, (lat, lon) = case
    fences = FenceSet()
    f = fences.add_polygon(rings)
    got = kernels.signed_distance_m(np.array([lat]), np.array([lon]), np.array([f]),
                                    *fences.arrays())[0]
    want = reference.polygon_signed_m(lat, lon, rings)
    tol = _poly_tolerance(want)
    assert abs(abs(got) - abs(want)) <= tol, (got, want)
    if abs(want) > tol:
        assert (got < 0) == (want < 0), (got, want)
        codes, margins = kernels.decide(np.array([got]), np.array([accuracy]),
                                        kernels.ACCURACY_68_TO_95)
        assert codes[0] == reference.decide(want, accuracy, kernels.ACCURACY_68_TO_95)[0] \
            or abs(abs(want) - margins[0]) < tol


@settings(max_examples=300, deadline=None)
@given(homes(), st.floats(1, 2000), st.floats(-3000, 3000), st.floats(-3000, 3000),
       st.floats(0, 1000))
def test_circle_kernel_matches_reference(home, radius, north_m, east_m, accuracy):
    lat0, lon0 = home
    lat = lat0 + north_m / kernels.M_PER_DEG
    lon = lon0 + east_m / (kernels.M_PER_DEG * math.cos(math.radians(lat0)))
    a = np.array
    codes, signed, margins = kernels.classify_circles(
        a([lat]), a([lon]), a([accuracy]), a([lat0]), a([lon0]), a([radius]),
        kernels.ACCURACY_68_TO_95)
    want = reference.circle_signed_m(lat, lon, lat0, lon0, radius)
    assert _close(signed[0], want)
    general = kernels.signed_distance_m(a([lat]), a([lon]), a([0]),
                                        *_one_circle(lat0, lon0, radius))
    assert _close(general[0], want)
    ref_code, ref_margin = reference.decide(want, accuracy, kernels.ACCURACY_68_TO_95)
    assert codes[0] == ref_code or abs(abs(want) - margins[0]) < ABS_M
    assert _close(margins[0], ref_margin)


def _one_circle(lat, lon, radius):
    fences = FenceSet()
    fences.add_circle(lat, lon, radius)
    return fences.arrays()


@given(st.sampled_from([(math.nan, 1.0), (1.0, math.nan), (91.0, 1.0), (1.0, -181.0),
                        (0.0, 0.0), (math.inf, 0.5)]))
def test_invalid_fixes(fix):
    lat, lon = fix
    a = np.array
    codes, signed, _ = kernels.classify_circles(a([lat]), a([lon]), a([10.0]), a([52.0]),
                                                a([1.0]), a([200.0]), 1.622)
    assert codes[0] == kernels.INVALID and math.isnan(signed[0])


def test_polygon_with_hole_fixed_example():
    # A 200 m square with a 40 m square hole, around a home in Norwich.
    lat, lon = 52.63, 1.30
    kx = math.cos(math.radians(lat)) * kernels.M_PER_DEG

    def sq(h):
        dx, dy = h / kx, h / kernels.M_PER_DEG
        return [(lon - dx, lat - dy), (lon + dx, lat - dy), (lon + dx, lat + dy),
                (lon - dx, lat + dy), (lon - dx, lat - dy)]

    fences = FenceSet()
    fences.add_polygon([sq(100), list(reversed(sq(20)))])
    fixes = [(lat, lon), (lat + 50 / kernels.M_PER_DEG, lon), (lat + 150 / kernels.M_PER_DEG, lon)]
    got = kernels.signed_distance_m(np.array([f[0] for f in fixes]),
                                    np.array([f[1] for f in fixes]), np.zeros(3, np.int64),
                                    *fences.arrays())
    assert got[0] == np.float64(got[0]) and abs(got[0] - 20.0) < 0.05  # in the hole: outside
    assert abs(got[1] + 30.0) < 0.05  # between hole and edge: inside
    assert abs(got[2] - 50.0) < 0.05  # outside
