"""The flat fence layout: prepared polygons, their cache, and FenceSet built from either."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geofence import kernels
from geofence.fences import FenceSet, PolygonCache, prepare_polygon

LAT, LON = 52.63, 1.30
KX = math.cos(math.radians(LAT)) * kernels.M_PER_DEG


def _square(half_m: float, reverse: bool = False) -> tuple[tuple[float, float], ...]:
    dx, dy = half_m / KX, half_m / kernels.M_PER_DEG
    ring = [(LON - dx, LAT - dy), (LON + dx, LAT - dy), (LON + dx, LAT + dy),
            (LON - dx, LAT + dy), (LON - dx, LAT - dy)]
    return tuple(reversed(ring) if reverse else ring)


def test_prepared_polygon_is_in_its_plane_with_ring_ends_closed():
    p = prepare_polygon((_square(100), _square(20, reverse=True)))
    assert p.ring_len == (5, 5)
    assert p.vx.dtype == np.float32 and p.vy.dtype == np.float32
    assert np.allclose(np.abs(p.vx[:4]), 100.0, atol=1e-3)
    assert np.allclose(np.abs(p.vy[5:9]), 20.0, atol=1e-3)
    # 1/|edge|^2 for the four edges of each ring; nothing from a ring's last vertex.
    assert np.allclose(p.vinv[:4], 1 / 200.0 ** 2, rtol=1e-5)
    assert np.allclose(p.vinv[5:9], 1 / 40.0 ** 2, rtol=1e-5)
    assert p.vinv[4] == 0 and p.vinv[9] == 0
    assert p.plane[3] < 0 < p.plane[5] and abs(p.plane[5] - 100.0) < 1e-6


def test_fence_set_from_prepared_matches_from_rings():
    rings = (_square(100), _square(20, reverse=True))
    direct, prepared = FenceSet(), FenceSet()
    for fences in (direct, prepared):
        fences.add_circle(LAT, LON, 50.0)
    direct.add_polygon(rings)
    prepared.add_prepared(prepare_polygon(rings))
    direct.add_polygon([_square(60)])
    prepared.add_prepared(prepare_polygon([_square(60)]))
    for a, b in zip(direct.arrays(), prepared.arrays(), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
    lat = np.array([LAT, LAT + 50 / kernels.M_PER_DEG, LAT])
    got = kernels.signed_distance_m(lat, np.full(3, LON), np.array([0, 1, 2]),
                                    *prepared.arrays())
    assert abs(got[0] + 50.0) < 0.05  # circle centre: 50 m inside
    assert abs(got[1] + 30.0) < 0.05  # between hole and edge
    assert abs(got[2] + 60.0) < 0.05  # centre of the plain square


def test_cache_returns_the_same_preparation_for_the_same_rings_object():
    cache = PolygonCache(size=2)
    a, b, c = (_square(100),), (_square(50),), (_square(30),)
    first = cache.get(a)
    assert cache.get(a) is first
    # Equal rings in another object are prepared again: identity is the key, so a roster
    # update (a new object) never sees a stale preparation.
    assert cache.get(tuple(a)) is first  # tuple() of a tuple is the same object
    assert cache.get((_square(100),)) is not first
    cache.get(b)
    cache.get(c)  # evicts the least recently used
    assert len(cache) == 2
    assert cache.get(a) is not first


_WARM_PROBE = """
import sys
from numba.core.registry import CPUDispatcher
from geofence import fences, kernels, warm_up

def compiled():
    return {f"{m.__name__}.{n}": len(d.signatures) for m in (fences, kernels)
            for n, d in vars(m).items() if isinstance(d, CPUDispatcher)}

before = compiled()
warm_up()
warmed = compiled()
# What a worker's detector does with GPS fixes against a circle and a polygon.
from tests.unit.stream.harness import Harness
from tests.factories import T0, event, north_of_home, visit
square = {"type": "Polygon", "coordinates": [[[1.297, 52.630], [1.298, 52.630],
          [1.298, 52.631], [1.297, 52.631], [1.297, 52.630]]]}
h = Harness()
h.roster(visit("v1"), visit("v2", client_id="c2", geofence=square))
lat, lon = north_of_home(1000)
h.events(event(at=T0, lat=lat, lon=lon, accuracy_m=10),
         event(at=T0, visit_id="v2", client_id="c2", lat=52.6305, lon=1.2975, event_id="e2"))
assert len(h.escalations) == 1, h.escalations
after = compiled()
print(sum(before.values()), sum(warmed.values()),
      sorted(k for k in after if after[k] != warmed[k]))
"""


def test_warm_up_compiles_every_kernel_a_worker_calls(tmp_path):
    """A worker calls warm_up() before it joins the group: the first batch of GPS fixes must
    not block the event loop compiling (about 2 s with no cached machine code)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", _WARM_PROBE], cwd=root, check=True,
                         capture_output=True, text=True,
                         env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}).stdout.split()
    assert out[0] == "0" and int(out[1]) > 0 and out[2:] == ["[]"], out


@pytest.mark.parametrize("polygons", [False, True])
def test_a_caller_may_have_one_decision_stand_for_every_fix_inside(polygons):
    """``inside=`` replaces the Decision of each fix inside its fence, and only those:
    every other fix's Decision is the one given without it."""
    from geofence.fences import Decision, classify, classify_circles

    fixes = [(LAT + north / 111_195.0, LON) for north in (0.0, 10.0, 500.0, 45.0)]
    acc = [10.0, 10.0, 10.0, 40.0]
    stand_in = Decision("inside", float("nan"), float("nan"))

    def decide(n: int, **kw):
        lat, lon = [f[0] for f in fixes[:n]], [f[1] for f in fixes[:n]]
        if polygons:
            fences = FenceSet()
            fence = fences.add_prepared(prepare_polygon([_square(50.0)]), LAT, LON)
            return classify(fences, [fence] * n, lat, lon, acc[:n], **kw)
        return classify_circles(lat, lon, acc[:n], [LAT] * n, [LON] * n, [50.0] * n, **kw)

    plain, lazy = decide(4), decide(4, inside=stand_in)
    assert [d.verdict for d in plain][:3] == ["inside", "inside", "outside"]
    assert plain[3].verdict != "inside"
    assert lazy == [stand_in if d.verdict == "inside" else d for d in plain]
    assert lazy[0] is stand_in and lazy[2] is not stand_in
    assert all(d is stand_in for d in decide(2, inside=stand_in))  # a batch all inside
