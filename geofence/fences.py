"""Fences in a flat, kernel-friendly layout, and the batch decision over them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from geofence import kernels

Ring = Sequence[tuple[float, float]]  # closed, (lon, lat) positions

_NAMES = {kernels.INSIDE: "inside", kernels.OUTSIDE: "outside",
          kernels.UNCERTAIN: "uncertain", kernels.INVALID: "invalid"}


class FenceSet:
    """Circles and polygons appended one by one, then frozen into flat arrays.

    A polygon's rings (exterior first, holes after) are stored end to end; ``ring_start`` and
    ``vert_start`` are offsets, as in CSR matrices. :meth:`arrays` projects the vertices into
    each polygon's own plane (see :mod:`geofence.kernels`) in one vectorised pass.
    """

    def __init__(self) -> None:
        self._kind: list[int] = []
        self._clat: list[float] = []
        self._clon: list[float] = []
        self._radius: list[float] = []
        self._ring_start: list[int] = [0]
        self._vert_start: list[int] = [0]
        self._vlon: list[float] = []
        self._vlat: list[float] = []
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
        self._kind.append(kernels.FENCE_POLYGON)
        self._clat.append(lat)
        self._clon.append(lon)
        self._radius.append(np.nan)
        for ring in rings:
            for x, y in ring:
                self._vlon.append(x)
                self._vlat.append(y)
            self._vert_start.append(len(self._vlon))
        self._ring_start.append(len(self._vert_start) - 1)
        self._plane.append(fence_plane(rings[0]))
        return len(self._kind) - 1

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arguments after ``fence_of`` of :func:`geofence.kernels.signed_distance_m`."""
        ring_start = np.asarray(self._ring_start, dtype=np.int64)
        vert_start = np.asarray(self._vert_start, dtype=np.int64)
        plane = np.asarray(self._plane, dtype=np.float64).reshape(-1, 7)
        # Each vertex's fence, through its ring.
        rings_per_fence = np.diff(ring_start)
        fence_of_ring = np.repeat(np.arange(len(self._kind)), rings_per_fence)
        fence_of_vertex = np.repeat(fence_of_ring, np.diff(vert_start))
        origin = plane[fence_of_vertex]
        vx = ((np.asarray(self._vlon, dtype=np.float64) - origin[:, 0])
              * origin[:, 2]).astype(np.float32)
        vy = ((np.asarray(self._vlat, dtype=np.float64) - origin[:, 1])
              * kernels.M_PER_DEG).astype(np.float32)
        # 1 / |edge|^2 for the edge from each vertex to the next (the last vertex of a ring
        # starts no edge); 0 for an edge under a micrometre, whose nearest point is then its
        # first vertex (and whose inverse would overflow float32). From the stored float32
        # vertices, so it matches the edge the kernel sees.
        len2 = np.diff(vx.astype(np.float64)) ** 2 + np.diff(vy.astype(np.float64)) ** 2
        vinv = np.zeros(vx.size, dtype=np.float64)
        np.divide(1.0, len2, out=vinv[:-1], where=len2 > 1e-12)
        vinv = vinv.astype(np.float32)
        return (np.asarray(self._kind, dtype=np.int8),
                np.asarray(self._clat, dtype=np.float64),
                np.asarray(self._clon, dtype=np.float64),
                np.asarray(self._radius, dtype=np.float64),
                ring_start, vert_start, vx, vy, vinv, plane)


def fence_plane(exterior: Ring) -> tuple[float, ...]:
    """A polygon's plane: origin (lon, lat) at its exterior's bounding-box centre, metres per
    degree of longitude there, and the box in plane metres (min x, min y, max x, max y)."""
    xs = [x for x, _ in exterior]
    ys = [y for _, y in exterior]
    lon0 = (min(xs) + max(xs)) / 2
    lat0 = (min(ys) + max(ys)) / 2
    kx = math.cos(math.radians(lat0)) * kernels.M_PER_DEG
    ky = kernels.M_PER_DEG
    return (lon0, lat0, kx, (min(xs) - lon0) * kx, (min(ys) - lat0) * ky,
            (max(xs) - lon0) * kx, (max(ys) - lat0) * ky)


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: str  # inside | outside | uncertain | invalid
    distance_m: float  # to the boundary: negative inside, positive outside
    margin_m: float


def classify(fences: FenceSet, fence_of: Sequence[int], lat: Sequence[float],
             lon: Sequence[float], accuracy_m: Sequence[float],
             k: float = kernels.ACCURACY_68_TO_95) -> list[Decision]:
    """One kernel call for a whole batch of fixes, each against its own fence."""
    if not len(fence_of):
        return []
    signed = kernels.signed_distance_m(
        np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64),
        np.asarray(fence_of, dtype=np.int64), *fences.arrays())
    codes, margins = kernels.decide(signed, np.asarray(accuracy_m, dtype=np.float64), k)
    return _decisions(codes, signed, margins)


def classify_circles(lat: Sequence[float], lon: Sequence[float], accuracy_m: Sequence[float],
                     clat: Sequence[float], clon: Sequence[float], radius_m: Sequence[float],
                     k: float = kernels.ACCURACY_68_TO_95) -> list[Decision]:
    """:func:`classify` for a batch whose fences are all circles, without a :class:`FenceSet`."""
    if not len(lat):
        return []
    f = np.float64
    codes, signed, margins = kernels.classify_circles(
        np.asarray(lat, dtype=f), np.asarray(lon, dtype=f), np.asarray(accuracy_m, dtype=f),
        np.asarray(clat, dtype=f), np.asarray(clon, dtype=f), np.asarray(radius_m, dtype=f), k)
    return _decisions(codes, signed, margins)


def _decisions(codes: np.ndarray, signed: np.ndarray, margins: np.ndarray) -> list[Decision]:
    return [Decision(_NAMES[c], s, m)
            for c, s, m in zip(codes.tolist(), signed.tolist(), margins.tolist(), strict=True)]
