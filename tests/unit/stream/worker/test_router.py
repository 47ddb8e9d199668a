import base64

import orjson

from stream.contract import Codec, Event, Rejection, Source, validate_event
from stream.contract.deadletter import MAX_RAW_BYTES, deadletter_doc
from stream.topics import partition_for
from stream.worker.router import decode_work, route
from tests.factories import T0, event, visit


def _src(offset, topic="ecm.events"):
    return Source(topic, 0, offset)


def test_route_groups_by_client_partition_and_keeps_sources():
    msgs = [(_src(1, "ecm.roster"), orjson.dumps([visit("v1", client_id="a"),
                                                  visit("v2", client_id="b")]), 1.0),
            (_src(2), orjson.dumps(event(at=T0, client_id="a")), 2.0),
            (_src(3), b'[1, {"client_id": 7}]', 3.0)]
    routed = route(msgs, "ecm.roster", 4)
    assert routed.received == {"roster": 2, "event": 2, "action": 0}
    assert [r.reason for r in routed.rejections] == ["not_an_object", "wrong_type"]
    records = [rec for _, value in routed.encoded() for rec in decode_work(value)[0]]
    assert sorted((k, s.topic, s.offset, s.index) for k, _, s in records) == [
        ("event", "ecm.events", 2, 0), ("roster", "ecm.roster", 1, 0),
        ("roster", "ecm.roster", 1, 1)]


def test_actions_are_routed_by_client_as_their_own_kind():
    doc = {"action_id": "a1", "escalation_id": "v1:missed", "client_id": "a",
           "type": "acknowledge", "at": "2026-11-18T11:40:00Z", "by": "u1", "owner_id": "m1"}
    p = partition_for("a", 4)
    for owned in ((), (p,)):  # forwarded, or kept by the worker that owns the partition
        routed = route([(Source("ecm.actions", p, 5), orjson.dumps(doc), 1.0)], "ecm.roster",
                       4, owned=owned, actions_topic="ecm.actions")
        assert routed.received["action"] == 1
        records = [rec for _, value in routed.encoded() for rec in decode_work(value)[0]]
        records += routed.local.get(p, [])
        assert [(k, obj, s.topic) for k, obj, s in records] == [("action", doc, "ecm.actions")]


def test_work_messages_are_split_below_the_size_limit():
    big = [visit(f"v{i}", client_id="same") for i in range(400)]
    routed = route([(_src(1, "ecm.roster"), orjson.dumps(big), 1.0)], "ecm.roster", 4,
                   max_bytes=50_000)
    encoded = routed.encoded()
    assert len(encoded) >= 3 and all(len(v) <= 50_000 for _, v in encoded)
    assert sum(len(decode_work(v)[0]) for _, v in encoded) == 400


def test_records_on_their_own_partition_skip_the_work_hop_for_owned_partitions():
    clients = [f"c{i}" for i in range(40)]
    home = {c: partition_for(c, 4) for c in clients}
    # Every client's events arrive on partition 0 and on their own partition.
    msgs = []
    for offset, c in enumerate(clients):
        for arrived in sorted({0, home[c]}):
            msgs.append((Source("ecm.events", arrived, offset),
                         orjson.dumps([event(at=T0, client_id=c, event_id=f"{c}-{arrived}-{k}")
                                       for k in range(3)]), 1.0))
    routed = route(msgs, "ecm.roster", 4, owned={0, 2})  # the partitions this worker owns
    local = routed.local
    assert set(local) == {0, 2}
    for p, records in local.items():
        # Each record with its message's timestamp.
        assert routed.local_stamps[p] == [1.0] * len(records)
        # Only records that arrived on their own client's partition, in arrival order.
        # Validated from the bytes already, each with the way back to its object.
        raw_object = Codec().raw_object
        assert all(type(obj) is Event and s.partition == p == home[obj.client_id]
                   and raw_object(obj.raw)["event_id"] == obj.event_id for _, obj, s in records)
        assert [(s.offset, s.index) for _, _, s in records] == sorted(
            (s.offset, s.index) for _, _, s in records)
        assert len(records) == 3 * sum(home[c] == p for c in clients)
    forwarded = [rec for _, value in routed.encoded() for rec in decode_work(value)[0]]
    # Everything else still goes through ecm.work: nothing is lost, nothing doubled.
    assert all(not (s.partition == home[obj["client_id"]] and s.partition in (0, 2))
               for _, obj, s in forwarded)
    assert len(forwarded) + sum(len(v) for v in local.values()) == routed.records == len(msgs) * 3


def test_local_records_the_one_pass_path_leaves_go_on_as_objects():
    """A local record the one-pass checks leave to the full checks reaches the detector as
    its decoded object, in its place; so does every record of a message that does not have
    the wire types."""
    c = next(f"c{i}" for i in range(100) if partition_for(f"c{i}", 4) == 1)
    island = dict(event(at=T0, client_id=c), lat=0.0, lon=0.0)  # typed right, (0, 0)
    mixed = [event(at=T0, client_id=c), island, event(at=T0, client_id=c)]
    # A wrong type, or a time that is not RFC 3339 with an offset, fails the typed decode.
    typed_wrong = [event(at=T0, client_id=c), dict(event(at=T0, client_id=c), lat="x"),
                   dict(event(at=T0, client_id=c), occurred_at="2026-11-18T12:00:00")]
    routed = route([(Source("ecm.events", 1, 7), orjson.dumps(mixed), 1.0),
                    (Source("ecm.events", 1, 8), orjson.dumps(typed_wrong), 1.0)],
                   "ecm.roster", 4, owned={1})
    records = routed.local[1]
    assert [(type(obj).__name__, s.offset, s.index) for _, obj, s in records] == [
        ("Event", 7, 0), ("dict", 7, 1), ("Event", 7, 2), ("dict", 8, 0), ("dict", 8, 1),
        ("dict", 8, 2)]
    assert records[1][1] == island and routed.records == routed.received["event"] == 6
    assert validate_event(records[1][1])[0] == "invalid_coordinates"
    assert [validate_event(r[1])[0] for r in records[4:]] == ["invalid_coordinates",
                                                             "invalid_time"]


def test_an_input_partition_whose_records_go_elsewhere_is_not_decoded_twice():
    """Messages are typed as wire structs while their partition's last message kept most of
    its records; after an unkeyed one they are decoded as objects, until a message keeps
    its records again. Where they go does not change."""
    clients = [f"c{i}" for i in range(40)]
    home = [c for c in clients if partition_for(c, 4) == 1]
    keyed_msg = orjson.dumps([event(at=T0, client_id=c) for c in home[:4]])
    unkeyed_msg = orjson.dumps([event(at=T0, client_id=c) for c in clients[:8]])
    keyed: dict[tuple[str, int], bool] = {}
    kinds = []
    for offset, value in enumerate([keyed_msg, unkeyed_msg, keyed_msg, keyed_msg]):
        routed = route([(Source("ecm.events", 1, offset), value, 1.0)], "ecm.roster", 4,
                       owned={1}, keyed=keyed)
        kinds.append({type(obj).__name__ for _, obj, _ in routed.local[1]})
        stays = sum(partition_for(c["client_id"], 4) == 1 for c in orjson.loads(value))
        assert len(routed.local[1]) == stays and routed.records == len(orjson.loads(value))
    # The second keyed message still comes after an unkeyed one: decoded as objects.
    assert kinds == [{"Event"}, {"Event"}, {"dict"}, {"Event"}]
    assert keyed == {("ecm.events", 1): True}


def test_dead_letter_keeps_raw_bytes_up_to_a_cap():
    small = deadletter_doc(Rejection("invalid_json", "x", b"{oops", _src(5)), T0, "router")
    assert base64.b64decode(small["raw"]) == b"{oops" and small["raw_truncated"] is False
    huge = b"x" * (MAX_RAW_BYTES + 10)
    doc = deadletter_doc(Rejection("invalid_json", "x", huge, _src(6)), T0, "router")
    assert doc["raw_size"] == len(huge) and doc["raw_truncated"] is True
    assert len(base64.b64decode(doc["raw"])) == MAX_RAW_BYTES
