"""Fences in a flat, kernel-friendly layout, and the batch decision over them."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, chain

import msgspec
import numpy as np
from numba import njit

from geofence import kernels

Ring = Sequence[tuple[float, float]]  # closed, (lon, lat) positions

_NAMES = {kernels.INSIDE: "inside", kernels.OUTSIDE: "outside",
          kernels.UNCERTAIN: "uncertain", kernels.INVALID: "invalid"}


@dataclass(frozen=True, slots=True)
class PreparedPolygon:
    """One polygon in its own plane (see :mod:`geofence.kernels`): its rings' vertices end to
    end as float32 metres east and north, 1 / |edge|^2 for the edge from each vertex (0 at a
    ring's last vertex, which starts no edge, and for an edge under a micrometre, whose
    nearest point is then its first vertex), the vertices per ring, and the plane."""

    vx: np.ndarray
    vy: np.ndarray
    vinv: np.ndarray
    ring_len: tuple[int, ...]
    plane: tuple[float, ...]


def prepare_polygon(rings: Sequence[Ring]) -> PreparedPolygon:
    """Project a polygon's rings (exterior first, closed, (lon, lat)) into its plane."""
    ring_len = tuple(len(ring) for ring in rings)
    total = sum(ring_len)
    lonlat = np.fromiter(chain.from_iterable(chain.from_iterable(rings)), dtype=np.float64,
                         count=2 * total)
    ring_end = np.array(list(accumulate(ring_len)), dtype=np.int64)
    vx, vy, vinv, plane = _project(lonlat, ring_end)
    return PreparedPolygon(vx, vy, vinv, ring_len, tuple(plane.tolist()))


@njit(cache=True, nogil=True)
def _project(lonlat: np.ndarray, ring_end: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (lon, lat pairs, rings end to end) into the plane of the exterior, which
    ends at ``ring_end[0]``. The plane: origin (lon, lat) at the exterior's bounding-box
    centre, metres per degree of longitude there, and the box in plane metres (min x,
    min y, max x, max y)."""
    n = lonlat.shape[0] // 2
    lo_x = hi_x = lonlat[0]
    lo_y = hi_y = lonlat[1]
    for i in range(ring_end[0]):
        lo_x = min(lo_x, lonlat[2 * i])
        hi_x = max(hi_x, lonlat[2 * i])
        lo_y = min(lo_y, lonlat[2 * i + 1])
        hi_y = max(hi_y, lonlat[2 * i + 1])
    lon0 = (lo_x + hi_x) / 2
    lat0 = (lo_y + hi_y) / 2
    kx = math.cos(math.radians(lat0)) * kernels.M_PER_DEG
    ky = kernels.M_PER_DEG
    plane = np.array([lon0, lat0, kx, (lo_x - lon0) * kx, (lo_y - lat0) * ky,
                      (hi_x - lon0) * kx, (hi_y - lat0) * ky])
    vx = np.empty(n, dtype=np.float32)
    vy = np.empty(n, dtype=np.float32)
    for i in range(n):
        vx[i] = np.float32((lonlat[2 * i] - lon0) * kx)
        vy[i] = np.float32((lonlat[2 * i + 1] - lat0) * ky)
    # 1 / |edge|^2 from the stored float32 vertices, so it matches the edge the kernel sees.
    vinv = np.zeros(n, dtype=np.float32)
    start = 0
    for end in ring_end:
        for i in range(start, end - 1):
            dx = np.float64(vx[i + 1]) - np.float64(vx[i])
            dy = np.float64(vy[i + 1]) - np.float64(vy[i])
            len2 = dx * dx + dy * dy
            if len2 > 1e-12:
                vinv[i] = np.float32(1.0 / len2)
        start = end
    return vx, vy, vinv, plane


class PolygonCache:
    """Prepared polygons by the identity of their rings object, the least recently used
    dropped first. A roster record's rings are an immutable tuple that lives as long as the
    record, so a visit's fence is projected once, not once per fix; an updated record brings
    a new object and so a fresh preparation. An entry holds its rings, so their id cannot
    be reused while it is cached."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._entries: OrderedDict[int, tuple[Sequence[Ring], PreparedPolygon]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, rings: Sequence[Ring]) -> PreparedPolygon:
        key = id(rings)
        hit = self._entries.get(key)
        if hit is not None and hit[0] is rings:
            self._entries.move_to_end(key)
            return hit[1]
        prepared = prepare_polygon(rings)
        self._entries[key] = (rings, prepared)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return prepared


class FenceSet:
    """Circles and polygons appended one by one, then frozen into flat arrays.

    A polygon's rings (exterior first, holes after) are stored end to end; ``ring_start`` and
    ``vert_start`` are offsets, as in CSR matrices. Polygons arrive prepared (projected into
    their planes, :func:`prepare_polygon`), so :meth:`arrays` only concatenates.
    """

    def __init__(self) -> None:
        self._kind: list[int] = []
        self._clat: list[float] = []
        self._clon: list[float] = []
        self._radius: list[float] = []
        self._ring_start: list[int] = [0]
        self._ring_len: list[int] = []
        self._polygons: list[PreparedPolygon] = []
        self._plane: list[tuple[float, ...]] = []

    def __len__(self) -> int:
        return len(self._kind)

    def add_circle(self, lat: float, lon: float, radius_m: float) -> int:
        self._kind.append(kernels.FENCE_CIRCLE)
        self._clat.append(lat)
        self._clon.append(lon)
        self._radius.append(radius_m)
        self._ring_start.append(self._ring_start[-1])
        self._plane.append((np.nan,) * 7)
        return len(self._kind) - 1

    def add_polygon(self, rings: Sequence[Ring], lat: float = np.nan, lon: float = np.nan) -> int:
        return self.add_prepared(prepare_polygon(rings), lat, lon)

    def add_prepared(self, polygon: PreparedPolygon, lat: float = np.nan,
                     lon: float = np.nan) -> int:
        self._kind.append(kernels.FENCE_POLYGON)
        self._clat.append(lat)
        self._clon.append(lon)
        self._radius.append(np.nan)
        self._ring_len.extend(polygon.ring_len)
        self._ring_start.append(len(self._ring_len))
        self._polygons.append(polygon)
        self._plane.append(polygon.plane)
        return len(self._kind) - 1

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arguments after ``fence_of`` of :func:`geofence.kernels.signed_distance_m`."""
        vert_start = np.zeros(len(self._ring_len) + 1, dtype=np.int64)
        np.cumsum(self._ring_len, out=vert_start[1:])
        polygons = self._polygons

        def joined(field: str) -> np.ndarray:
            parts = [getattr(p, field) for p in polygons]
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

        return (np.asarray(self._kind, dtype=np.int8),
                np.asarray(self._clat, dtype=np.float64),
                np.asarray(self._clon, dtype=np.float64),
                np.asarray(self._radius, dtype=np.float64),
                np.asarray(self._ring_start, dtype=np.int64), vert_start,
                joined("vx"), joined("vy"), joined("vinv"),
                np.asarray(self._plane, dtype=np.float64).reshape(-1, 7))


# One is built for every fix: a struct the garbage collector does not track (it holds a
# string and two floats), not frozen (a frozen dataclass's __init__ paid an
# object.__setattr__ per field, which costs more than twice as much).
class Decision(msgspec.Struct, gc=False):
    verdict: str  # inside | outside | uncertain | invalid
    distance_m: float  # to the boundary: negative inside, positive outside
    margin_m: float


def classify(fences: FenceSet, fence_of: Sequence[int], lat: Sequence[float],
             lon: Sequence[float], accuracy_m: Sequence[float],
             k: float = kernels.ACCURACY_68_TO_95, *,
             inside: Decision | None = None) -> list[Decision]:
    """One kernel call for a whole batch of fixes, each against its own fence.

    ``inside``, if given, stands for every fix found inside its fence, for a caller that
    reads nothing else of those (the detector): one Decision less to build for each."""
    if not len(fence_of):
        return []
    signed = kernels.signed_distance_m(
        np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64),
        np.asarray(fence_of, dtype=np.int64), *fences.arrays())
    codes, margins = kernels.decide(signed, np.asarray(accuracy_m, dtype=np.float64), k)
    return _decisions(codes, signed, margins, inside)


def classify_circles(lat: Sequence[float], lon: Sequence[float], accuracy_m: Sequence[float],
                     clat: Sequence[float], clon: Sequence[float], radius_m: Sequence[float],
                     k: float = kernels.ACCURACY_68_TO_95, *,
                     inside: Decision | None = None) -> list[Decision]:
    """:func:`classify` for a batch whose fences are all circles, without a :class:`FenceSet`."""
    if not len(lat):
        return []
    f = np.float64
    codes, signed, margins = kernels.classify_circles(
        np.asarray(lat, dtype=f), np.asarray(lon, dtype=f), np.asarray(accuracy_m, dtype=f),
        np.asarray(clat, dtype=f), np.asarray(clon, dtype=f), np.asarray(radius_m, dtype=f), k)
    return _decisions(codes, signed, margins, inside)


def _decisions(codes: np.ndarray, signed: np.ndarray, margins: np.ndarray,
               inside: Decision | None = None) -> list[Decision]:
    if inside is None:
        return [Decision(_NAMES[c], s, m) for c, s, m in zip(
            codes.tolist(), signed.tolist(), margins.tolist(), strict=True)]
    found = codes.tolist()
    if not any(found):  # every fix inside (INSIDE is 0): as a rule, a whole batch
        return [inside] * len(found)
    return [inside if c == kernels.INSIDE else Decision(_NAMES[c], s, m) for c, s, m in zip(
        found, signed.tolist(), margins.tolist(), strict=True)]


assert kernels.INSIDE == 0


def warm_up() -> float:
    """Compile, or load from Numba's cache, every kernel a worker calls, with the types it
    calls them with; return the seconds it took.

    A kernel is otherwise compiled by its first call: a worker's first batch of GPS fixes
    held the event loop for 2.1-2.2 s with no cached machine code, and for 0.16 s loading
    it from the cache (this function's time, on the 2-core machine). A worker calls this
    before it joins its group, and ``deploy/Dockerfile`` fills the cache at build time.
    """
    import time

    started = time.perf_counter()
    classify_circles([52.63], [1.30], [10.0], [52.63], [1.30], [50.0])
    fences = FenceSet()
    fences.add_circle(52.63, 1.30, 50.0)
    fences.add_prepared(prepare_polygon([[(1.297, 52.630), (1.298, 52.630), (1.298, 52.631),
                                          (1.297, 52.631), (1.297, 52.630)]]))
    classify(fences, [0, 1], [52.6305, 52.6305], [1.2975, 1.2975], [10.0, 10.0])
    return time.perf_counter() - started
