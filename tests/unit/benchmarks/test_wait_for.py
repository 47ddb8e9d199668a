"""The benchmark's timed window (benchmarks.pipeline.wait_for), with scripted counters."""

import time

from benchmarks.pipeline import wait_for


def _script(*reads):
    """A counter that answers ``reads`` in turn, then repeats the last."""
    left = list(reads)
    return lambda: left.pop(0) if len(left) > 1 else left[0]


def test_the_clock_starts_at_the_last_poll_before_the_first_stage_moved():
    got = wait_for(_script((0, 0), (0, 0), (0, 0), (10, 10)), 10, 5, "scripted")
    assert got.count == 10 and 0 < got.seconds < 0.2  # one poll interval, about


def test_a_backlog_all_seen_before_the_first_poll_is_timed_from_the_resume():
    """Every record received before the first poll, the last applied a few polls later:
    no poll saw the first stage still, so the window starts when the worker resumed."""
    resumed = time.perf_counter() - 0.5
    got = wait_for(_script((2, 10), (5, 10), (10, 10)), 10, 5, "scripted", resumed=resumed)
    assert got.count == 10 and got.seconds >= 0.5 and got.rate < 20

