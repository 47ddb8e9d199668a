"""Time-window kernels: lateness, duration deviations and due instants, over arrays.

Instants are float seconds since the Unix epoch (UTC); a missing instant is NaN. Every
kernel is one pass over its arrays, compiled with ``cache=True`` and ``nogil=True``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

DURATION_OK = 0
SHORTENED = 1
EXTENDED = 2
DURATION_UNKNOWN = 3  # a check-in or check-out is missing, or the check-out is before it


@njit(cache=True, nogil=True)
def lateness_s(arrival: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Seconds from the scheduled start to the arrival; NaN where nobody arrived."""
    n = arrival.shape[0]
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        out[i] = arrival[i] - start[i]  # NaN propagates
    return out


@njit(cache=True, nogil=True)
def duration_verdicts(check_in: np.ndarray, check_out: np.ndarray, start: np.ndarray,
                      end: np.ndarray, threshold_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, difference_s)``: shortened when the actual duration is at least
    ``threshold_s`` below the scheduled one, extended when at least that much above."""
    n = check_in.shape[0]
    codes = np.empty(n, dtype=np.int8)
    diff = np.empty(n, dtype=np.float64)
    for i in range(n):
        actual = check_out[i] - check_in[i]
        if not math.isfinite(actual) or actual < 0.0:
            codes[i] = DURATION_UNKNOWN
            diff[i] = np.nan
            continue
        d = actual - (end[i] - start[i])
        diff[i] = d
        if d <= -threshold_s[i]:
            codes[i] = SHORTENED
        elif d >= threshold_s[i]:
            codes[i] = EXTENDED
        else:
            codes[i] = DURATION_OK
    return codes, diff


@njit(cache=True, nogil=True)
def due_instants(start: np.ndarray, end: np.ndarray, late_after_s: np.ndarray,
                 missed_after_s: np.ndarray, no_checkout_after_s: np.ndarray) -> np.ndarray:
    """The three deadlines of each visit, as rows: late, missed, no check-out."""
    n = start.shape[0]
    out = np.empty((n, 3), dtype=np.float64)
    for i in range(n):
        out[i, 0] = start[i] + late_after_s[i]
        out[i, 1] = start[i] + missed_after_s[i]
        out[i, 2] = end[i] + no_checkout_after_s[i]
    return out


@njit(cache=True, nogil=True)
def due_between(due: np.ndarray, after: float, until: float) -> np.ndarray:
    """Indices of the instants in ``(after, until]``: what a sweep at ``until`` must raise
    when the previous sweep ran at ``after``. One pass, no sorting needed."""
    n = due.shape[0]
    hits = np.empty(n, dtype=np.int64)
    k = 0
    for i in range(n):
        d = due[i]
        if after < d <= until:
            hits[k] = i
            k += 1
    return hits[:k]
