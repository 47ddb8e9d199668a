"""Geofence kernels against shapely 2, side by side in one run: ``python -m benchmarks.geofence``.

The workload is the stream's: each fix is checked against its own visit's fence, for a
decision (inside / outside / uncertain) and the distance to the boundary in the evidence.
Every timed run checks its answer against the reference on a sample, so a fast wrong kernel
fails the benchmark. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Point

from geofence import kernels, reference
from geofence.fences import FenceSet, PolygonCache

K = kernels.ACCURACY_68_TO_95
UK = (50.0, 58.5, -6.0, 1.8)


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = math.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def _homes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.uniform(UK[0], UK[1], n), rng.uniform(UK[2], UK[3], n)


def _fixes_near(rng: np.random.Generator, lat: np.ndarray, lon: np.ndarray,
                spread_m: float) -> tuple[np.ndarray, np.ndarray]:
    dlat = rng.normal(0, spread_m, lat.size) / kernels.M_PER_DEG
    dlon = rng.normal(0, spread_m, lat.size) / (kernels.M_PER_DEG * np.cos(np.radians(lat)))
    return lat + dlat, lon + dlon


def bench_circles(n: int, repeat: int, rng: np.random.Generator) -> dict[str, float]:
    clat, clon = _homes(rng, n)
    radius = np.full(n, 200.0)
    lat, lon = _fixes_near(rng, clat, clon, 250.0)
    acc = rng.uniform(3, 80, n)
    kernels.classify_circles(lat[:8], lon[:8], acc[:8], clat[:8], clon[:8], radius[:8], K)
    dt, (codes, signed, _) = _best(
        lambda: kernels.classify_circles(lat, lon, acc, clat, clon, radius, K), repeat)
    for i in rng.integers(0, n, 200):
        want = reference.circle_signed_m(lat[i], lon[i], clat[i], clon[i], radius[i])
        assert abs(signed[i] - want) < 1e-6, (i, signed[i], want)
        assert codes[i] == reference.decide(want, acc[i], K)[0]

    def numpy_haversine() -> np.ndarray:
        p1, p2 = np.radians(lat), np.radians(clat)
        a = (np.sin((p2 - p1) / 2) ** 2
             + np.cos(p1) * np.cos(p2) * np.sin(np.radians(clon - lon) / 2) ** 2)
        s = 2 * kernels.EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(a))) - radius
        m = K * acc
        return np.where(s < -m, 0, np.where(s > m, 1, 2))

    dt_np, _ = _best(numpy_haversine, repeat)
    return {"circle_checks_per_s": n / dt, "circle_numpy_checks_per_s": n / dt_np}


def _star_polygons(rng: np.random.Generator, fences: int, vertices: int
                   ) -> tuple[list[list[tuple[float, float]]], np.ndarray, np.ndarray]:
    clat, clon = _homes(rng, fences)
    rings = []
    for lat, lon in zip(clat, clon, strict=True):
        angles = np.sort(rng.uniform(0, 2 * np.pi, vertices))
        r = rng.uniform(80, 200, vertices)
        kx = math.cos(math.radians(lat)) * kernels.M_PER_DEG
        ring = [(lon + ri * math.cos(a) / kx, lat + ri * math.sin(a) / kernels.M_PER_DEG)
                for a, ri in zip(angles, r, strict=True)]
        ring.append(ring[0])
        rings.append(ring)
    return rings, clat, clon


def bench_polygons(vertices: int, n: int, fences: int, per_point: int, repeat: int,
                   rng: np.random.Generator) -> dict[str, float]:
    rings, clat, clon = _star_polygons(rng, fences, vertices)
    fence_set = FenceSet()
    for ring in rings:
        fence_set.add_polygon([ring])
    arrays = fence_set.arrays()
    fence_of = rng.integers(0, fences, n)
    lat, lon = _fixes_near(rng, clat[fence_of], clon[fence_of], 200.0)
    acc = rng.uniform(3, 80, n)

    def kernel() -> tuple[np.ndarray, np.ndarray]:
        signed = kernels.signed_distance_m(lat, lon, fence_of, *arrays)
        codes, _ = kernels.decide(signed, acc, K)
        return codes, signed

    kernel_small = kernels.signed_distance_m(lat[:4], lon[:4], fence_of[:4], *arrays)
    assert kernel_small.shape == (4,)
    dt, (_codes, signed) = _best(kernel, repeat)
    for i in rng.integers(0, n, 100):
        want = reference.polygon_signed_m(lat[i], lon[i], [rings[fence_of[i]]])
        tol = kernels.POLYGON_TOLERANCE_M + kernels.POLYGON_TOLERANCE_REL * abs(want)
        assert abs(signed[i] - want) <= tol, (i, signed[i], want)

    # shapely 2, vectorised: prepared polygons (preparation not timed), one per fix.
    polys = shapely.polygons([np.asarray(r) for r in rings])
    shapely.prepare(polys)
    geoms = polys[fence_of]

    def shapely_vectorised() -> np.ndarray:
        inside = shapely.contains_xy(geoms, lon, lat)
        dist = shapely.distance(shapely.boundary(geoms), shapely.points(lon, lat))
        return np.where(inside, -dist, dist)

    dt_vec, vec = _best(shapely_vectorised, repeat)
    agree = np.mean(((vec < 0) == (signed < 0)) | (np.abs(signed) < 1e-3))
    assert agree > 0.999, agree

    # shapely per point, the way most code is written.
    m = min(per_point, n)

    def shapely_per_point() -> int:
        hits = 0
        for i in range(m):
            poly = polys[fence_of[i]]
            p = Point(lon[i], lat[i])
            hits += poly.contains(p)
            poly.boundary.distance(p)
        return hits

    dt_pp, hits = _best(shapely_per_point, 1)
    assert hits == int(np.sum(signed[:m] < 0)) or abs(hits - int(np.sum(signed[:m] < 0))) <= 1
    rate = n / dt
    tag = f"polygon{vertices}"
    return {f"{tag}_checks_per_s": rate,
            f"{tag}_shapely_vectorised_checks_per_s": n / dt_vec,
            f"{tag}_shapely_per_point_checks_per_s": m / dt_pp,
            f"{tag}_vs_shapely_vectorised": rate / (n / dt_vec),
            f"{tag}_vs_shapely_per_point": rate / (m / dt_pp)}


def bench_gather(vertices: int, fixes: int, rng: np.random.Generator) -> dict[str, float]:
    """The stream's step before the kernel: a batch's fences gathered into one FenceSet,
    each visit's polygon projected for the fix (first fix of a visit) or taken from the
    detector's cache of projections (later fixes)."""
    rings, _, _ = _star_polygons(rng, fixes, vertices)
    polygons = [(tuple(ring),) for ring in rings]
    cache = PolygonCache(size=fixes)

    def projected() -> FenceSet:
        fences = FenceSet()
        for rings_ in polygons:
            fences.add_polygon(rings_)
        fences.arrays()
        return fences

    def cached() -> FenceSet:
        fences = FenceSet()
        for rings_ in polygons:
            fences.add_prepared(cache.get(rings_))
        fences.arrays()
        return fences

    projected()
    cached()
    dt_projected, a = _best(projected, 3)
    dt_cached, b = _best(cached, 3)
    for x, y in zip(a.arrays(), b.arrays(), strict=True):
        assert np.array_equal(x, y, equal_nan=True)
    tag = f"polygon{vertices}_gather_us_per_fix"
    return {f"{tag}_projected": dt_projected / fixes * 1e6,
            f"{tag}_cached": dt_cached / fixes * 1e6}


_START_PROBE = """
import time
t0 = time.perf_counter()
import numpy as np
from geofence import kernels
a = np.ones(2)
i = np.zeros(2, dtype=np.int64)
kernels.classify_circles(a, a, a, a, a, a, 1.6)
kernels.decide(a, a, 1.6)
kernels.circle_signed_m(a, a, a, a, a)
from geofence.fences import FenceSet
fences = FenceSet()
fences.add_polygon([[(0.1, 0.1), (0.2, 0.1), (0.2, 0.2), (0.1, 0.1)]])
kernels.signed_distance_m(a, a, i, *fences.arrays())
print(time.perf_counter() - t0)
"""


def bench_start() -> dict[str, float]:
    """Import plus first call of every kernel, in a fresh process: cold (empty cache) and
    warm (the cache the cold run wrote)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        runs = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", _START_PROBE], env=env, check=True,
                                 capture_output=True, text=True)
            runs.append(float(out.stdout.strip().splitlines()[-1]))
    return {"cold_start_s": runs[0], "warm_start_s": runs[1]}


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fixes", type=int, default=2_000_000, help="circle workload size")
    parser.add_argument("--polygon-fixes", type=int, default=200_000)
    parser.add_argument("--fences", type=int, default=2_000)
    parser.add_argument("--per-point", type=int, default=5_000,
                        help="fixes for the per-point shapely loop")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", help="also write the JSON result to this file")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    result: dict[str, Any] = {"threads": 1, "shapely": shapely.__version__,
                              "numpy": np.__version__, "cpus": os.cpu_count(),
                              "commit": _commit()}
    result.update(bench_start())
    result.update(bench_circles(args.fixes, args.repeat, rng))
    for v in (8, 64, 512):
        n = args.polygon_fixes if v < 512 else max(1, args.polygon_fixes // 4)
        result.update(bench_polygons(v, n, args.fences, args.per_point, args.repeat, rng))
    result.update(bench_gather(64, 500, rng))
    print(f"{'workload':<34}{'checks/s':>16}")
    print(f"{'circle (kernel, one thread)':<34}{result['circle_checks_per_s']:>16,.0f}")
    print(f"{'circle (numpy vectorised)':<34}{result['circle_numpy_checks_per_s']:>16,.0f}")
    for v in (8, 64, 512):
        t = f"polygon{v}"
        print(f"{f'polygon {v} vertices (kernel)':<34}{result[t + '_checks_per_s']:>16,.0f}")
        print(f"{'  shapely vectorised, prepared':<34}"
              f"{result[t + '_shapely_vectorised_checks_per_s']:>16,.0f}"
              f"   kernel x{result[t + '_vs_shapely_vectorised']:.1f}")
        print(f"{'  shapely per point':<34}{result[t + '_shapely_per_point_checks_per_s']:>16,.0f}"
              f"   kernel x{result[t + '_vs_shapely_per_point']:.0f}")
    print(f"gathering a batch's 64-vertex fences: "
          f"{result['polygon64_gather_us_per_fix_projected']:.1f} us per fix projecting, "
          f"{result['polygon64_gather_us_per_fix_cached']:.1f} us from the cache")
    print(f"JIT start: cold {result['cold_start_s']:.2f} s, warm {result['warm_start_s']:.2f} s")
    line = json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()})
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
