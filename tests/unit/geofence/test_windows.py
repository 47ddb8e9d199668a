"""Time-window kernels against a plain reference."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence import windows

instants = st.floats(1.7e9, 1.9e9)
maybe = st.one_of(st.just(math.nan), instants)


def _duration_ref(ci, co, start, end, thr):
    actual = co - ci
    if not math.isfinite(actual) or actual < 0:
        return windows.DURATION_UNKNOWN
    d = actual - (end - start)
    if d <= -thr:
        return windows.SHORTENED
    if d >= thr:
        return windows.EXTENDED
    return windows.DURATION_OK


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(maybe, maybe, instants, st.floats(60, 90000), st.floats(1, 3600)),
                min_size=1, max_size=50))
def test_duration_verdicts_match_reference(rows):
    ci = np.array([r[0] for r in rows])
    co = np.array([r[1] for r in rows])
    start = np.array([r[2] for r in rows])
    end = start + np.array([r[3] for r in rows])
    thr = np.array([r[4] for r in rows])
    codes, _ = windows.duration_verdicts(ci, co, start, end, thr)
    assert list(codes) == [_duration_ref(*args) for args in zip(ci, co, start, end, thr,
                                                                 strict=True)]


@settings(max_examples=200, deadline=None)
@given(st.lists(instants, max_size=200), instants, st.floats(0, 1e6))
def test_due_between_matches_reference(due, after, span):
    arr = np.array(due, dtype=np.float64)
    got = windows.due_between(arr, after, after + span)
    assert list(got) == [i for i, d in enumerate(due) if after < d <= after + span]


def test_due_instants_and_lateness():
    start = np.array([100.0, 200.0])
    end = np.array([1900.0, 2000.0])
    rows = windows.due_instants(start, end, np.array([900.0, 60.0]), np.array([1800.0, 120.0]),
                                np.array([1800.0, 30.0]))
    assert rows.tolist() == [[1000.0, 1900.0, 3700.0], [260.0, 320.0, 2030.0]]
    late = windows.lateness_s(np.array([1100.0, math.nan]), start)
    assert late[0] == 1000.0 and math.isnan(late[1])
