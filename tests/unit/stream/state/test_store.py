import msgspec
import pytest

from stream.contract.records import Escalation
from stream.state.store import MemoryStore, RocksStore
from tests.factories import T0, event, visit
from tests.unit.stream.harness import Harness


def _records(h):
    """The harness's escalations (as published) as the records the worker holds."""
    return [msgspec.convert(e, Escalation) for e in h.escalations]


def test_rocks_store_round_trip_and_offsets(tmp_path):
    h = Harness()
    h.roster(visit("v1"), visit("v2", client_id="c2"))
    h.events(event(at=T0, visit_id="v1", event_id="e-1"))
    h.at(T0 + 900)
    store = RocksStore(tmp_path / "p0")
    store.apply_delta(h.detector.take_delta(), offset=4)
    store.apply_escalations(_records(h), last_offset=9)
    store.close()
    again = RocksStore(tmp_path / "p0")
    snap = again.load()
    assert (snap.state_offset, snap.escalations_offset) == (5, 10)
    assert sorted(v["id"] for v in snap.visits) == ["v1", "v2"]
    assert [e["escalation_id"] for e in snap.escalations] == ["v2:late"]
    again.reset()
    assert again.load().visits == []
    again.close()


@pytest.mark.parametrize("from_bytes", [True, False])
def test_rocks_store_keeps_the_roster_record_when_later_deltas_leave_it_out(tmp_path,
                                                                            from_bytes):
    from tests.unit.stream.state.test_changelog_and_restore import _rebuild

    h = Harness(from_bytes=from_bytes)
    h.roster(visit("v1"), visit("v2", client_id="c2"))
    first = h.detector.take_delta()
    h.events(event(at=T0, visit_id="v1", event_id="e-1"))
    second = h.detector.take_delta()
    assert second["visits"] == [] and second["fc"]["id"] == ["v1"]  # columns: no record
    store = RocksStore(tmp_path / "p0")
    store.apply_delta(first, 0)
    store.apply_delta(second, 1)
    snap = store.load()
    store.close()
    by_id = {d["id"]: d for d in snap.visits}
    record = by_id["v1"]["s"][0] if from_bytes else by_id["v1"]["v"]["visit_id"]
    assert record == "v1" and by_id["v1"]["ci"][0] == "w1"  # one worker: [worker, mark]
    assert by_id["v1"]["ci"][1][2] == "e-1"
    copy = _rebuild(h, [snap.as_delta()])
    assert copy.visits["v1"].checkins["w1"].event_id == "e-1"
    assert copy.visits["v2"].visit.client_id == "c2"


def test_rocks_store_forgets_purged_visits(tmp_path):
    store = RocksStore(tmp_path / "p0")
    h = Harness()
    h.roster(visit("v1"))
    h.at(T0 + 900)
    store.apply_delta(h.detector.take_delta(), 0)
    store.apply_escalations(_records(h), 0)
    h.at(T0 + 40 * 3600)
    store.apply_delta(h.detector.take_delta(), 1)
    snap = store.load()
    assert snap.visits == [] and snap.escalations == [] and snap.state_offset == 2
    store.close()


def test_rocks_store_keeps_each_waiting_event_under_its_own_key(tmp_path):
    """The mirror writes a waiting event when a delta adds it and deletes it when one
    removes it; a checkpoint's whole list replaces what it held."""
    from tests.unit.stream.state.test_changelog_and_restore import _rebuild

    h = Harness(unscheduled_grace_s=600)
    store = RocksStore(tmp_path / "p0")
    h.events(*[event(at=T0, visit_id=f"vx{i}", client_id=f"c{i}", event_id=f"e{i}")
               for i in range(5)])
    store.apply_delta(h.detector.take_delta(), 0)
    h.roster(visit("vx1", client_id="c1"))
    store.apply_delta(h.detector.take_delta(), 1)
    snap = store.load()
    assert sorted(p["e"]["event_id"] for p in snap.pending) == ["e0", "e2", "e3", "e4"]
    copy = _rebuild(h, [snap.as_delta()])
    assert sorted(copy.pending) == sorted(h.detector.pending)
    # A checkpoint's first slice: the list whole, replacing the keys held.
    store.apply_delta({"p": 0, "visits": [], "deleted": [],
                       "pending": [h.detector.pending["e4"].to_doc()]}, 2)
    assert [p["e"]["event_id"] for p in store.load().pending] == ["e4"]
    store.close()


def test_rocks_store_reads_a_pending_list_written_whole(tmp_path):
    """A store written before waiting events had keys of their own still loads."""
    import orjson

    from stream.state.store import _PENDING

    h = Harness()
    h.events(event(at=T0, visit_id="vx", client_id="cx", event_id="old"))
    store = RocksStore(tmp_path / "p0")
    store.db[_PENDING] = orjson.dumps([h.detector.pending["old"].to_doc()])
    assert [p["e"]["event_id"] for p in store.load().pending] == ["old"]
    # A later delta's removal reaches it.
    store.apply_delta({"p": 0, "visits": [], "deleted": [], "pending": None, "pr": ["old"]}, 1)
    assert store.load().pending == []
    store.close()


def test_memory_store_reads_from_the_beginning():
    snap = MemoryStore().load()
    assert (snap.state_offset, snap.escalations_offset, snap.visits) == (0, 0, [])


def test_rocks_stores_share_one_memtable_budget(tmp_path):
    from stream.state.store import ROCKS_MEMTABLE_BUDGET, rocks_options

    shared = rocks_options()  # as Stores opens a worker's partitions
    stores = [RocksStore(tmp_path / f"p{i}", shared) for i in range(4)]
    record = {"visit_id": "x" * 300}
    for k in range(0, 40_000, 1000):  # about 60 MB written, in batches as deltas are
        for i, store in enumerate(stores):
            store.apply_delta({"visits": [{"id": f"v{i}-{j}", "v": record, "ci": {}, "co": {},
                                           "ev": {}} for j in range(k, k + 1000)],
                               "deleted": []}, offset=k)
    held = sum(s.db.property_int_value("rocksdb.cur-size-all-mem-tables") for s in stores)
    assert 0 < held <= ROCKS_MEMTABLE_BUDGET
    assert len(stores[0].load().visits) == 40_000
    for store in stores:
        store.close()


def test_rocks_store_keeps_the_safeguarding_counts_after_their_visits_are_gone(tmp_path):
    from tests.unit.stream.state.test_changelog_and_restore import _rebuild

    store = RocksStore(tmp_path / "p0")
    h = Harness()
    h.roster(visit("v1"), visit("v2", client_id="c2"))
    h.at(T0 + 900)  # both late: counted for safeguarding
    store.apply_delta(h.detector.take_delta(), 0)
    h.at(T0 + 40 * 3600)  # both forgotten
    store.apply_delta(h.detector.take_delta(), 1)
    store.close()
    again = RocksStore(tmp_path / "p0")
    snap = again.load()
    again.close()
    assert snap.visits == []
    assert sorted(snap.failures) == ["c1", "c2"]
    copy = _rebuild(h, [snap.as_delta()])
    assert copy.state.failures == h.detector.state.failures
    assert [f[1:3] for f in copy.state.failures["c1"]] == [["late", "v1"], ["missed", "v1"]]
