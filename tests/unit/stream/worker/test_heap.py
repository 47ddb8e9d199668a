"""Settling the heap: freed pages go back to the system within seconds of a load or of
records applied, not after every slice."""

from stream.worker.heap import TRIM_EVERY_S, Heap


def test_a_trim_skipped_during_a_load_happens_on_a_later_call():
    calls = []
    clock = [1000.0]
    heap = Heap(trim=calls.append, monotonic=lambda: clock[0])
    heap.settle()
    assert calls == [0]  # the first settle trims
    clock[0] += 1.0
    heap.settle()  # too soon: deferred
    heap.trim_if_due()
    assert calls == [0]
    clock[0] += TRIM_EVERY_S
    heap.trim_if_due()  # the sweep timer's call: now due
    assert calls == [0, 0]
    clock[0] += TRIM_EVERY_S
    heap.trim_if_due()  # nothing applied since: nothing to trim
    assert calls == [0, 0]
    heap.changed()  # a batch of records was applied
    heap.trim_if_due()
    assert calls == [0, 0, 0]


def test_the_collector_is_paused_for_a_batch_and_resumes_when_the_last_one_ends():
    import gc

    heap = Heap(trim=lambda pad: None)
    assert gc.isenabled()
    with heap.paused():
        assert not gc.isenabled()
        with heap.paused():  # the other agent's batch, interleaved
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    try:
        with heap.paused():
            raise RuntimeError("a batch that fails")
    except RuntimeError:
        pass
    assert gc.isenabled()


def test_a_tracked_visit_s_objects_are_not_walked_by_the_collector():
    """A million visits are held at once: the objects each one keeps are untracked, so the
    collector's walks do not grow with the roster (stream.contract.Source)."""
    import gc

    from tests.factories import T0, event, visit
    from tests.unit.stream.harness import Harness

    h = Harness()
    h.roster(visit("v1"))
    h.events(event(at=T0, visit_id="v1", event_id="e-1"))
    d = h.detector
    vs = d.visits["v1"]
    held = [vs, vs.visit, vs.checkins, vs.checkins["w1"], d.state.event_index["e-1"]]
    assert [gc.is_tracked(o) for o in held] == [False] * len(held)
