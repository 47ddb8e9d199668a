"""A partition rebuilt from its changelog and escalation records behaves as the original."""

import orjson
import pytest

from stream.clock import ManualClock
from stream.rules.detector import PartitionDetector
from stream.settings import Settings
from stream.state.changelog import dumps
from tests.factories import T0, event, north_of_home, visit
from tests.unit.stream.harness import Harness, partition_state


def _rebuild(h: Harness, deltas):
    copy = PartitionDetector(0, h.settings, ManualClock(h.clock.now()))
    # Through JSON, as the changelog carries it.
    copy.restore([orjson.loads(dumps(d)) for d in deltas],
                 [orjson.loads(orjson.dumps(e)) for e in h.escalations])
    return copy


def test_restored_partition_does_not_reopen_and_still_raises_what_is_due():
    h = Harness()
    deltas = []
    h.roster(visit("v1"), visit("v2", client_id="c2"), visit("v3", client_id="c3"))
    deltas.append(h.detector.take_delta())
    h.events(event(at=T0 + 10, visit_id="v2", client_id="c2"))
    deltas.append(h.detector.take_delta())
    h.at(T0 + 900)
    assert sorted(e["escalation_id"] for e in h.escalations) == ["v1:late", "v3:late"]
    # The sweep changed nothing but the counts of late visits, for safeguarding.
    counted = h.detector.take_delta()
    assert counted["visits"] == [] and sorted(counted["sf"]) == ["c1", "c3"]
    deltas.append(counted)
    copy = _rebuild(h, [d for d in deltas if d])
    copy.clock.set(T0 + 1800)
    out = copy.sweep()
    assert sorted(e.escalation_id for e in out.escalations) == ["v1:missed", "v3:missed"]
    assert copy.visits["v2"].checkins["w1"].occurred == T0 + 10


@pytest.mark.parametrize("from_bytes", [True, False])
def test_the_roster_record_is_written_once_and_replays_under_later_deltas(from_bytes):
    from stream.state.changelog import first_rows, row_doc
    from stream.state.visit import visit_from_fields

    # A record validated from the bytes is written as its fields; a decoded object as itself.
    key = "s" if from_bytes else "v"
    h = Harness(from_bytes=from_bytes)
    h.roster(visit("v1"))
    first = h.detector.take_delta()
    assert [k for k in ("v", "s") if k in first["visits"][0]] == [key]
    written = orjson.loads(dumps(first["visits"][0][key]))  # as a replay reads it
    assert written[0 if from_bytes else "visit_id"] == "v1"
    h.events(event(at=T0 + 10, event_id="e-1"))
    second = h.detector.take_delta()
    # A first check-in: written as the delta's columns, without the record.
    assert second["visits"] == [] and second["fc"]["id"] == ["v1"]
    (row,) = first_rows(second)
    assert row_doc(row)["ci"] == ["w1", [T0 + 10, T0 + 10, "e-1", "gps"]]
    assert row_doc(row)["ev"] == {"e-1": h.detector.state.event_index["e-1"]}
    assert h.detector.visits["v1"].visit.raw is None  # the record is not kept
    h.roster(visit("v1", minutes=45))  # a re-booking writes the record again
    third = h.detector.take_delta()
    record = orjson.loads(dumps(third["visits"][0][key]))
    if from_bytes:
        assert visit_from_fields(record, h.codec.workers) == h.detector.visits["v1"].visit
    else:
        assert record["scheduled_end"] == visit("v1", minutes=45)["scheduled_end"]
    copy = _rebuild(h, [first, second, third])
    assert copy.visits["v1"].checkins["w1"].event_id == "e-1"
    assert copy.visits["v1"].visit.end == T0 + 45 * 60
    assert copy.visits["v1"].visit.raw is None
    # A partition restored from the records alone still raises what is due.
    copy.clock.set(T0 + 45 * 60 + 3600)
    assert [e.kind for e in copy.sweep().escalations] == ["no_check_out"]


def test_restored_partition_treats_replayed_events_as_replays():
    h = Harness()
    h.roster(visit())
    h.events(event(at=T0, event_id="e-1"))
    delta = h.detector.take_delta()
    copy = _rebuild(h, [delta])
    src = h.detector.state.event_index["e-1"]
    from stream.contract import Source
    out = copy.process([("event", event(at=T0, event_id="e-1"), Source(*src.as_list()))])
    assert out.replayed == 1 and out.rejections == []


def test_restored_pending_event_still_expires():
    h = Harness()
    h.events(event(at=T0, visit_id=None, client_id="c9"))
    copy = _rebuild(h, [h.detector.take_delta()])
    copy.clock.set(T0 + 121)
    assert [e.kind for e in copy.sweep().escalations] == ["unscheduled"]


def test_waiting_events_are_written_as_their_changes_and_replay_to_the_same_list():
    """A delta carries the events a batch left waiting (``pa``) and the ids of those it
    matched or expired (``pr``), never the whole list: a roster outage that leaves many
    check-ins waiting must not cost each batch all of them."""
    h = Harness(unscheduled_grace_s=600)
    h.roster(visit("v1"))
    deltas = [h.detector.take_delta()]
    h.events(*[event(at=T0, visit_id=f"later{i}", client_id=f"c{i}", event_id=f"e{i}")
               for i in range(50)])
    first = h.detector.take_delta()
    assert first["pending"] is None and first.get("pr", []) == []
    assert sorted(d["e"]["event_id"] for d in first["pa"]) == sorted(f"e{i}" for i in range(50))
    deltas.append(first)
    h.events(event(at=T0 + 1, visit_id="later50", client_id="c50", event_id="e50"))
    second = h.detector.take_delta()
    assert [d["e"]["event_id"] for d in second["pa"]] == ["e50"]  # this batch's own only
    deltas.append(second)
    # Two of them find their roster record (one of them twice over): removals only.
    h.roster(visit("later3", client_id="c3"), visit("later7", client_id="c7"))
    h.roster(visit("later3", client_id="c3", minutes=45))
    third = h.detector.take_delta()
    assert sorted(third["pr"]) == ["e3", "e7"] and third.get("pa", []) == []
    deltas.append(third)
    # A roster record of a client whose event names another visit: it goes on waiting,
    # and nothing about it is written again.
    h.roster(visit("other", client_id="c9"))
    fourth = h.detector.take_delta()
    assert fourth.get("pa", []) == [] and fourth.get("pr", []) == []
    assert "e9" in h.detector.pending
    deltas.append(fourth)
    copy = _rebuild(h, deltas)
    assert partition_state(copy) == partition_state(h.detector)
    assert len(copy.pending) == 49
    # The rest expire: removals, and the rebuild ends as empty as the partition.
    h.at(T0 + 700)
    fifth = h.detector.take_delta()
    assert len(fifth["pr"]) == 49 and fifth.get("pa", []) == []
    deltas.append(fifth)
    copy = _rebuild(h, deltas)
    assert copy.pending == {}
    # Everything but the event index: the partition holds the expired events' ids against
    # resends until they are too old to be accepted, and the changelog does not carry them.
    assert copy.state.event_index.keys() < h.detector.state.event_index.keys()
    state, rebuilt = list(partition_state(h.detector)), list(partition_state(copy))
    del state[2], rebuilt[2]
    assert rebuilt == state
    h.at(T0 + h.settings.max_event_age_s + 2)
    assert h.detector.state.event_index == {}
    deltas.append(h.detector.take_delta())  # the visits are past their retention too
    assert partition_state(_rebuild(h, deltas)) == partition_state(h.detector)


def test_a_waiting_event_from_the_bytes_is_written_as_its_record_without_a_second_decode():
    """Check-ins validated from their message's bytes keep only (bytes, index); one left
    waiting is written as the record its fields stand for, and its message is not decoded
    again (a fault in a field the contract does not know can then never stop it)."""
    from stream.clock import ManualClock
    from stream.contract import Codec, Source
    from stream.settings import Settings

    decoded = []

    def loads(value):
        decoded.append(value)
        return orjson.loads(value)

    codec = Codec(loads=loads)  # counts what it decodes again
    d = PartitionDetector(0, Settings(), ManualClock(T0), codec)
    docs = [event(at=T0 + i / 1000, visit_id=f"vx{i}", client_id=f"c{i}", event_id=f"e{i}",
                  unknown="ignored") for i in range(200)]
    records = codec.records(orjson.dumps(docs), False)
    d.process([("event", r, Source("ecm.events", 0, 7, i)) for i, r in enumerate(records)])
    delta = d.take_delta()
    written = [p["e"] for p in delta["pa"]]
    assert [e["event_id"] for e in written] == [f"e{i}" for i in range(200)]
    assert decoded == []
    # Every field the contract keeps, and the same instant to the microsecond.
    assert {k: v for k, v in docs[7].items() if k != "unknown"} | {
        "occurred_at": written[7]["occurred_at"]} == written[7]
    assert codec.event(written[7]).occurred_at == records[7].occurred_at

def test_a_changelog_that_wrote_the_pending_list_whole_still_replays():
    """Deltas written before the changes replaced the list whole: they still replay."""
    h = Harness()
    h.events(event(at=T0, visit_id="vx", client_id="cx", event_id="old"))
    doc = h.detector.take_delta()
    legacy = {k: v for k, v in doc.items() if k not in ("pa", "pr")}
    legacy["pending"] = doc["pa"]
    copy = _rebuild(h, [legacy])
    assert list(copy.pending) == ["old"]
    assert partition_state(copy) == partition_state(h.detector)


def test_old_visits_are_purged_and_the_purge_is_in_the_delta():
    h = Harness()
    h.roster(visit())
    h.detector.take_delta()
    h.at(T0 + 40 * 3600)
    delta = h.detector.take_delta()
    assert delta["deleted"] == ["v1"]
    assert "v1" not in h.detector.visits


def test_forgetting_rides_the_timer_chain_and_is_not_counted_as_a_deadline():
    from stream.rules.attendance import RETENTION_S

    h = Harness(cases=True)
    h.roster(visit("v1"), visit("v2", client_id="c2", status="cancelled"))
    assert h.detector.deadlines_pending == 1  # v1's late; v2 has none, only its forgetting
    end = T0 + 1800
    for due in (T0 + 900, T0 + 1800, end + 7200):  # late, missed and no check-out all passed,
        h.at(due)  # and the deadlines of their cases
    assert h.detector.deadlines_pending == 0 and sorted(h.detector.visits) == ["v1", "v2"]
    h.at(end + RETENTION_S - 1)
    assert sorted(h.detector.visits) == ["v1", "v2"]
    h.at(end + RETENTION_S + 1)
    assert h.detector.visits == {} and sorted(h.detector.take_delta()["deleted"]) == ["v1", "v2"]


def test_a_visit_booked_later_is_not_forgotten_at_its_old_instant():
    from stream.rules.attendance import RETENTION_S

    h = Harness()
    h.roster(visit("v1"))
    h.at(T0 + 7200)
    later = T0 + 20 * 3600
    h.roster(visit("v1", start=later))
    h.at(T0 + 1800 + RETENTION_S + 60)
    assert "v1" in h.detector.visits
    h.at(later + 1800 + RETENTION_S + 60)
    assert "v1" not in h.detector.visits


def test_a_restored_partition_still_forgets_its_visits():
    from stream.rules.attendance import RETENTION_S

    h = Harness(cases=True)
    h.roster(visit("v1"), visit("v2", client_id="c2", status="cancelled"))
    copy = _rebuild(h, [h.detector.take_delta()])
    assert copy.deadlines_pending == 1
    for due in (T0 + 900, T0 + 1800, T0 + 1800 + 900, T0 + 1800 + RETENTION_S + 1):
        copy.clock.set(due)  # its escalations raised, then their cases' deadlines
        copy.sweep()
    assert copy.visits == {} and copy.deadlines_pending == 0


def test_settings_from_env():
    s = Settings.from_env({"ECM_BROKER": "k:1", "ECM_PARTITIONS": "3", "ECM_LATE_AFTER_S": "60"})
    assert (s.broker, s.partitions, s.late_after_s) == ("k:1", 3, 60.0)


def test_the_state_compression_is_a_codec_kafka_knows_or_none():
    from stream.errors import SettingsError

    assert Settings().state_compression == "zstd"
    assert Settings.from_env({"ECM_STATE_COMPRESSION": "none"}).state_compression == "none"
    with pytest.raises(SettingsError, match="ECM_STATE_COMPRESSION"):
        Settings.from_env({"ECM_STATE_COMPRESSION": "brotli"})


@pytest.mark.parametrize("from_bytes", [True, False])
def test_a_large_delta_is_split_and_replays_to_the_same_state(from_bytes):
    from stream.state.changelog import encode_delta

    h = Harness(from_bytes=from_bytes)
    h.roster(*[visit(f"v{i}", client_id=f"c{i}") for i in range(300)])
    h.events(*[event(at=T0, visit_id=None, client_id=f"nobody{i}") for i in range(40)])
    delta = h.detector.take_delta()
    [(same, whole_bytes)] = encode_delta(delta, 10_000_000)
    assert same is delta and whole_bytes == dumps(delta)
    whole = _rebuild(h, [delta])
    for max_bytes in (20_000, 2_000):  # 2,000 bytes also splits the pending list
        encoded = encode_delta(delta, max_bytes)
        docs = [doc for doc, _ in encoded]
        assert len(docs) >= 5
        assert all(value == dumps(doc) for doc, value in encoded)
        assert all(len(value) <= max_bytes for _, value in encoded)
        # 2,000 bytes cuts the waiting events into several documents too.
        assert (max_bytes == 2_000) == (sum("pa" in doc for doc in docs) > 1)
        parts = _rebuild(h, docs)
        assert sorted(parts.visits) == sorted(whole.visits) == sorted(h.detector.visits)
        assert sorted(parts.pending) == sorted(whole.pending) and len(parts.pending) == 40


def test_a_large_delta_whose_sample_is_unlike_the_rest_still_fits():
    """A delta of many visits is cut from a sample's size: visits larger than the sample
    are halved into parts that fit, and replay to the same state."""
    from stream.state.changelog import _SAMPLE, encode_delta

    h = Harness()
    h.roster(*[visit(f"v{i}", client_id=f"c{i}") for i in range(_SAMPLE)])
    h.roster(*[visit(f"w{i}", client_id=f"d{i}", nfc_tags=[f"tag-{i}-{k}" for k in range(40)])
               for i in range(_SAMPLE)])
    delta = h.detector.take_delta()
    encoded = encode_delta(delta, 60_000)
    assert all(len(value) <= 60_000 for _, value in encoded)
    assert all(value == dumps(doc) for doc, value in encoded)
    parts = _rebuild(h, [doc for doc, _ in encoded])
    assert sorted(parts.visits) == sorted(h.detector.visits)
    assert partition_state(parts) == partition_state(h.detector)


def test_open_escalation_counts_follow_opens_resolutions_restores_and_purges():
    from collections import Counter

    from stream.rules.attendance import RETENTION_S

    def recount(book):
        return Counter((r.kind, r.priority) for r in book.records.values()
                       if r.status == "open")

    h = Harness()
    h.roster(visit("v1"), visit("v2", client_id="c2"), visit("v3", client_id="c3"))
    h.at(T0 + 1000)  # all three late
    h.events(event(at=T0 + 1000, visit_id="v1", event_id="e1"))  # v1 late resolved
    book = h.detector.book
    assert book.open_by_kind == recount(book) and book.open_count() == 2
    again = _rebuild(h, [h.detector.take_delta()])
    assert again.book.open_by_kind == recount(again.book) == recount(book)
    h.at(T0 + 1800 + RETENTION_S + 120)  # past retention: forgotten with their records
    assert book.open_by_kind == recount(book) == Counter()


def test_visits_without_events_share_one_empty_mapping_and_writes_get_their_own():
    import pytest

    from stream.state.visit import Mark, VisitState

    h = Harness()
    h.roster(visit("v1"), visit("v2", client_id="c2"))
    a, b = h.detector.visits["v1"], h.detector.visits["v2"]
    assert a.checkins is b.checkins and a.events is b.events == ()  # shared empties
    with pytest.raises(TypeError):
        a.checkins["w1"] = Mark(T0, T0, "e", "gps")
    h.events(event(at=T0, visit_id="v1", event_id="e-1"))
    assert list(a.checkins) == ["w1"] and list(a.events) == ["e-1"]
    assert not b.checkins and not b.events and b.checkins is not a.checkins
    again = VisitState.from_doc(orjson.loads(dumps(b.checkpoint_doc({}))), h.codec)
    assert again.checkins is b.checkins  # restored empty: shared again
    h.detector.take_delta()  # writes the records: from here a visit is written as a row
    row = orjson.loads(dumps(a.to_doc(h.detector.state.event_index)))
    assert row == ["v1", ["w1", list(a.checkins["w1"].as_list())], {}, ["e-1"],
                   [h.detector.state.event_index["e-1"].as_list()]]  # sources too


def test_marks_read_as_a_dict_whether_one_worker_or_two():
    import sys

    h = Harness()
    h.roster(visit("v1", workers=("w1", "w2")))
    h.events(event(at=T0 + 10, worker_id="w1", event_id="e-1"))
    vs = h.detector.visits["v1"]
    one = vs.checkins
    assert sys.getsizeof(one) < sys.getsizeof({"w1": 1})  # one worker: no dict
    assert (len(one), "w1" in one, "w2" in one, one.get("w2"), list(one)) == (
        1, True, False, None, ["w1"])
    assert one["w1"].event_id == "e-1" and [m.event_id for m in one.values()] == ["e-1"]
    h.events(event(at=T0 + 20, worker_id="w2", event_id="e-2"))
    assert sorted(vs.checkins) == ["w1", "w2"] and type(vs.checkins) is dict
    assert vs.arrival() == T0 + 20
    assert one["w1"].event_id == "e-1"  # never written in place
    deltas = [h.detector.take_delta()]
    copy = _rebuild(h, deltas)
    assert {w: m.event_id for w, m in copy.visits["v1"].checkins.items()} == {
        "w1": "e-1", "w2": "e-2"}
    h.events(event("check_out", at=T0 + 1800, worker_id="w1", event_id="e-3"))
    assert list(vs.checkouts) == ["w1"]
    copy = _rebuild(h, [*deltas, h.detector.take_delta()])
    assert list(copy.visits["v1"].checkouts) == ["w1"] and len(copy.visits["v1"].checkins) == 2


def test_a_waiting_event_s_object_is_decoded_once_for_every_delta_that_writes_it():
    h = Harness()  # validated from the bytes: the event held (message, index)
    h.events(event(at=T0, visit_id="v-later", event_id="e-wait"))
    (waiting,) = h.detector.pending.values()
    assert type(waiting.event.raw) is dict  # decoded when it began to wait
    first = waiting.to_doc()
    assert waiting.to_doc() == first
    assert first["e"]["event_id"] == "e-wait"


def test_first_check_ins_are_columns_cut_to_size_and_replay_as_the_rows_they_stand_for():
    from stream.state.changelog import encode_delta, first_rows

    h = Harness()
    h.roster(*[visit(f"v{i}", client_id=f"c{i}") for i in range(300)])
    booked = h.detector.take_delta()
    lat, lon = north_of_home(1000)
    h.events(*[event(at=T0 + i, visit_id=f"v{i}", client_id=f"c{i}", event_id=f"first-{i}")
               for i in range(250)],
             # Outside its fence: the full rules, a row.
             event(at=T0, visit_id="v250", client_id="c250", lat=lat, lon=lon),
             # A first check-in, then the visit's check-out in the same batch: the row has
             # both, and the columns leave the visit out.
             event(at=T0, visit_id="v251", client_id="c251", event_id="in-251"),
             event("check_out", at=T0 + 900, visit_id="v251", client_id="c251"))
    delta = h.detector.take_delta()
    assert delta["fc"]["id"] == [f"v{i}" for i in range(250)]
    assert delta["fc"]["r"] == T0 + 900  # one batch: received at one instant, written once
    assert sorted(r[0] for r in delta["visits"]) == ["v250", "v251"]
    assert h.detector.take_delta() is None  # taken: the columns are empty again
    whole = _rebuild(h, [booked, delta])
    assert partition_state(whole) == partition_state(h.detector)
    encoded = encode_delta(delta, 2_000)
    docs = [doc for doc, _ in encoded]
    assert all(len(value) <= 2_000 for _, value in encoded)
    assert all(value == dumps(doc) for doc, value in encoded)
    assert sum("fc" in doc for doc in docs) > 5  # the columns cut into documents
    assert [r[0] for doc in docs for r in first_rows(doc)] == delta["fc"]["id"]
    assert partition_state(_rebuild(h, [booked, *docs])) == partition_state(h.detector)


def test_first_check_ins_of_visits_changed_again_or_forgotten_are_left_out():
    from stream.contract import Source
    from stream.state.changelog import FirstCheckIns

    f = FirstCheckIns()
    for i, t in enumerate((10.0, 10.0, 11.0)):
        f.ids.append(f"v{i}")
        f.workers.append("w1")
        f.occurred.append(t)
        f.received.append(t)
        f.events.append(f"e{i}")
        f.sources.append(Source("ecm.events", 0, i, 0))
    doc = f.take({"v1": None}, ["v2"])
    assert doc is not None and doc["id"] == ["v0"] and doc["r"] == 10.0
    assert f.take({}, []) is None  # empty once taken
    f.ids.append("v3")
    f.workers.append("w1")
    f.occurred.append(1.0)
    f.received.append(2.0)
    f.events.append("e3")
    f.sources.append(Source("ecm.events", 0, 3, 0))
    assert f.take({"v3": None}, []) is None  # every entry left out
