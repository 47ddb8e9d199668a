"""Checkpoints: a partition replayed from its last checkpoint is the partition replayed from
the beginning, and the partition itself."""

from __future__ import annotations

import functools

import orjson
import pytest

from stream.clock import ManualClock
from stream.contract import Codec, Visit
from stream.rules.detector import PartitionDetector
from stream.state.changelog import dumps
from stream.state.store import RocksStore
from stream.state.visit import visit_fields, visit_from_fields
from stream.worker.metrics import Metrics
from tests.factories import T0, event, visit
from tests.unit.stream.harness import Harness, Log, partition_state

_SQUARE = {"type": "Polygon", "coordinates": [[[1.297, 52.630], [1.298, 52.630],
                                                [1.298, 52.631], [1.297, 52.631],
                                                [1.297, 52.630]]]}


def test_visit_fields_round_trip_through_json():
    codec = Codec()
    for doc in (visit("v1"),
                visit("v2", workers=("w1", "w2"), geofence=_SQUARE, risk_level="critical",
                      lives_alone=True, time_critical=True, contract_id="k-9",
                      late_after_s=120.5, no_checkout_after_s=600, status="cancelled"),
                visit("v3", start=T0 + 0.123456, geofence_radius_m=75)):
        v = codec.visit(doc)
        assert isinstance(v, Visit)
        back = visit_from_fields(orjson.loads(orjson.dumps(visit_fields(v))), codec.workers)
        assert back == v and back.raw is None
        assert type(back.worker_ids) is tuple and type(back.client_phones) is tuple
        if v.polygon is not None:
            assert type(back.polygon[0][0]) is tuple


def test_no_checkpoint_until_enough_is_written():
    h = Harness(checkpoint_min_bytes=10_000)
    log = Log(h)
    h.roster(visit("v1"))
    log.publish()
    cp = h.detector.checkpointer
    assert cp.written > 0 and cp.base == 0 and cp.completed == 0
    assert h.detector.take_checkpoint(100) is None


def test_replay_from_the_checkpoint_is_the_partition_with_changes_during_it():
    h = Harness(checkpoint_min_bytes=1)
    log = Log(h, budget=2)
    h.roster(*[visit(f"v{i}", client_id=f"c{i}", start=T0 + 60 * i) for i in range(7)],
             visit("vp", client_id="cp", geofence=_SQUARE),
             # Ended long ago: forgotten at the next sweep, while the checkpoint is under way.
             visit("old", client_id="co", start=T0 - 50 * 3600))
    h.events(event(at=T0 - 600, visit_id="v1", client_id="c1"))
    began = h.clock.now()
    log.publish()  # the roster's delta, then the checkpoint's first slice
    assert h.detector.checkpointer.under_way
    first = len(log.docs) - 1
    # Changes while the checkpoint is under way: to visits written already and not yet,
    # a new booking, an event that waits for its roster record, a forgotten visit.
    h.events(event(at=T0 - 590, visit_id="v0", client_id="c0"),
             event(at=T0 - 580, visit_id="v6", client_id="c6"),
             event(at=T0 - 570, visit_id="vx", client_id="cx"))
    log.publish()
    h.roster(visit("v7", client_id="c7"), visit("v2", client_id="c2", minutes=45))
    h.at(T0 - 560)
    assert "old" not in h.detector.visits
    log.publish()
    while h.detector.checkpointer.under_way:
        h.events(event(at=h.clock.now() + 1, visit_id="v3", client_id="c3", type_="check_out"))
        log.publish()
    assert h.detector.checkpointer.completed == 1 and h.detector.checkpointer.base == first
    log.publish()  # nothing changed: the new base is written all the same, once
    assert log.docs[-1] == {"p": 0, "visits": [], "deleted": [], "pending": None, "b": first,
                            "bt": began}
    before = len(log.docs)
    log.publish()
    assert len(log.docs) == before
    h.roster(visit("vx", client_id="cx"))  # the waiting event finds its visit
    log.publish()
    assert all(doc["b"] == first for doc in log.docs[-1:])
    expected = partition_state(h.detector)
    assert partition_state(log.replay(first)) == expected
    assert partition_state(log.replay(0)) == expected
    # The rebuilt partition goes on as the original would.
    copy = log.replay(first)
    later = T0 + 7 * 3600
    h.clock.set(later)
    copy.clock.set(later)
    ids = sorted(e.escalation_id for e in h.detector.sweep().escalations)
    assert ids and sorted(e.escalation_id for e in copy.sweep().escalations) == ids


def test_a_second_checkpoint_waits_for_twice_the_first():
    h = Harness(checkpoint_min_bytes=1)
    log = Log(h, budget=100)
    h.roster(*[visit(f"v{i}", client_id=f"c{i}") for i in range(5)])
    log.publish()
    assert h.detector.checkpointer.completed == 1
    size = h.detector.checkpointer.last_bytes
    assert size > 0 and h.detector.take_checkpoint(100) is None
    while h.detector.checkpointer.completed == 1:
        h.events(event(at=h.clock.now() + 1, visit_id="v1", client_id="c1"))
        log.publish()
    # ``written`` counts from the first checkpoint's start: it began with the second.
    assert h.detector.checkpointer.base > 0
    assert partition_state(log.replay(h.detector.checkpointer.base)) == partition_state(h.detector)


def test_an_idle_partition_checkpoints_once_its_last_checkpoint_is_old():
    """The topics drop records older than their retention: a partition that writes nothing
    must still write a checkpoint before its last one is dropped."""
    h = Harness(checkpoint_max_age_s=3600)
    log = Log(h, budget=2)
    h.roster(*[visit(f"v{i}", client_id=f"c{i}", start=T0 + 86400) for i in range(5)])
    h.events(event(at=T0 - 3600 + 1, visit_id="v1", client_id="c1", event_id="e-early"))
    log.publish()
    # 64 MB not written
    assert h.detector.checkpointer.completed == 0 and not h.detector.checkpointer.under_way
    metrics = Metrics()
    metrics.watch_state(lambda: [h.detector], dict)
    age = functools.partial(metrics.registry.get_sample_value,
                            "ecm_state_checkpoint_age_seconds")
    h.clock.set(T0 - 1)  # the detector started at T0 - 3600
    log.publish()
    assert not h.detector.checkpointer.under_way and len(log.docs) == 1
    assert age() == 3599
    h.clock.set(T0)
    log.publish()  # nothing changed, yet a checkpoint begins
    first = 1
    assert h.detector.checkpointer.under_way and log.docs[first]["bt"] == T0 - 3600
    while h.detector.checkpointer.under_way:
        log.publish()
    log.publish()  # the new base and its time, in the partition's last message
    assert h.detector.checkpointer.completed == 1 and h.detector.checkpointer.base == first
    assert (log.docs[-1]["b"], log.docs[-1]["bt"]) == (first, T0)
    assert age() == 0
    # The records before the checkpoint may go: a replay from it is the partition.
    assert partition_state(log.replay(first)) == partition_state(h.detector)
    # The next one is due an age after this one began, not after it ended.
    h.clock.set(T0 + 3599)
    log.publish()
    assert not h.detector.checkpointer.under_way
    h.clock.set(T0 + 3600)
    log.publish()
    assert h.detector.checkpointer.under_way


def test_a_checkpoint_larger_than_a_message_is_split_and_replays():
    h = Harness(checkpoint_min_bytes=1)
    log = Log(h, budget=50, max_bytes=2_000)
    h.roster(*[visit(f"v{i}", client_id=f"c{i}") for i in range(40)])
    log.publish()
    while h.detector.checkpointer.under_way:
        log.publish()
    assert h.detector.checkpointer.completed == 1
    assert len(log.docs) - h.detector.checkpointer.base > 2
    assert partition_state(log.replay(h.detector.checkpointer.base)) == partition_state(h.detector)


def test_rocks_store_keeps_a_checkpoint_s_fields(tmp_path):
    h = Harness(checkpoint_min_bytes=1)
    h.roster(visit("v1", geofence=_SQUARE))
    h.events(event(at=T0 - 10))
    h.detector.take_delta()
    h.detector.checkpointer.wrote(1)
    checkpoint = h.detector.take_checkpoint(10)
    store = RocksStore(tmp_path / "db")
    try:
        store.apply_delta(orjson.loads(dumps(checkpoint)), 41)
        snap = store.load()
    finally:
        store.close()
    assert snap.state_offset == 42
    copy = PartitionDetector(0, h.settings, ManualClock(h.clock.now()))
    # The store keeps escalation records from the topic itself (apply_escalations).
    copy.restore([snap.as_delta()], h.escalations)
    assert partition_state(copy) == partition_state(h.detector)


def test_the_first_slice_carries_the_pending_events():
    h = Harness(checkpoint_min_bytes=1, unscheduled_grace_s=3600)
    log = Log(h, budget=1)
    h.roster(visit("v1"), visit("v2", client_id="c2"))
    h.events(event(at=T0 - 600, visit_id="vx", client_id="cx", event_id="waiting"))
    log.publish()
    while h.detector.checkpointer.under_way:
        h.events(event(at=h.clock.now() + 1, visit_id="v1"))
        log.publish()
    copy = log.replay(h.detector.checkpointer.base)
    assert list(copy.pending) == ["waiting"]
    assert partition_state(copy) == partition_state(h.detector)


def test_a_checkpoint_carries_the_escalation_book_and_where_the_topic_resumes():
    h = Harness(checkpoint_min_bytes=1)
    log = Log(h, budget=4)  # one escalation record a slice
    h.roster(*[visit(f"v{i}", client_id=f"c{i}") for i in range(6)])
    log.publish()
    while h.detector.checkpointer.under_way:
        log.publish()
    h.at(T0 + 1000)  # six late
    h.events(event(at=T0 + 1001, visit_id="v0", client_id="c0"))  # v0's resolved
    log.publish()
    assert not h.detector.checkpointer.under_way  # not due yet: little written since
    for k in range(100):  # check-outs of v5, until a second checkpoint is due
        h.events(event(at=T0 + 1002, visit_id="v5", client_id="c5", type_="check_out",
                       event_id=f"out{k}"))
        log.publish()
        if h.detector.checkpointer.under_way:
            break
    assert h.detector.checkpointer.under_way
    begun = len(h.escalations)
    # During the checkpoint: v2 and v3 are resolved, v4 goes on to missed.
    h.events(event(at=T0 + 1010, visit_id="v2", client_id="c2"),
             event(at=T0 + 1011, visit_id="v3", client_id="c3"))
    log.publish()
    h.at(T0 + 1900)
    while h.detector.checkpointer.under_way:
        log.publish()
    base = h.detector.checkpointer.base
    e = log.docs[base]["e"]
    assert 0 < e <= begun < len(h.escalations)
    assert sum(len(doc.get("esc", ())) for doc in log.docs[base:]) >= 6
    expected = partition_state(h.detector)
    assert partition_state(log.replay(base)) == expected
    assert partition_state(log.replay(0)) == expected
    # The rebuilt book opens nothing twice and resolves what is still open.
    copy = log.replay(base)
    copy.clock.set(T0 + 1905)
    out = copy.process([("event", event(at=T0 + 1904, visit_id="v4", client_id="c4"),
                         h.source("ecm.events"))])
    assert sorted((r.escalation_id, r.status) for r in out.escalations) == [
        ("v4:late", "resolved"), ("v4:missed", "resolved")]


def test_the_topics_keep_records_for_at_least_two_checkpoint_ages():
    from stream.errors import SettingsError
    from stream.settings import Settings
    from stream.topics import _retained

    assert _retained(Settings(checkpoint_max_age_s=3600, state_retention_s=7200)) == {
        "retention.ms": "7200000", "retention.bytes": "-1"}
    assert _retained(Settings(state_retention_s=0))["retention.ms"] == "-1"  # for good
    for bad in (7199.0, -1.0):
        with pytest.raises(SettingsError, match="ECM_STATE_RETENTION_S"):
            Settings(checkpoint_max_age_s=3600, state_retention_s=bad)
