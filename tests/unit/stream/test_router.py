import base64

import orjson

from stream.contract import Rejection, Source
from stream.router import MAX_RAW_BYTES, deadletter_doc, decode_work, route
from tests.factories import T0, event, visit


def _src(offset, topic="ecm.events"):
    return Source(topic, 0, offset)


def test_route_groups_by_client_partition_and_keeps_sources():
    msgs = [(_src(1, "ecm.roster"), orjson.dumps([visit("v1", client_id="a"),
                                                  visit("v2", client_id="b")]), 1.0),
            (_src(2), orjson.dumps(event(at=T0, client_id="a")), 2.0),
            (_src(3), b'[1, {"client_id": 7}]', 3.0)]
    routed = route(msgs, "ecm.roster", 4)
    assert routed.received == {"roster": 2, "event": 2}
    assert [r.reason for r in routed.rejections] == ["not_an_object", "wrong_type"]
    records = [rec for _, value in routed.encoded() for rec in decode_work(value)[0]]
    assert sorted((k, s.topic, s.offset, s.index) for k, _, s in records) == [
        ("event", "ecm.events", 2, 0), ("roster", "ecm.roster", 1, 0), ("roster", "ecm.roster", 1, 1)]


def test_work_messages_are_split_below_the_size_limit():
    big = [visit(f"v{i}", client_id="same") for i in range(400)]
    routed = route([(_src(1, "ecm.roster"), orjson.dumps(big), 1.0)], "ecm.roster", 4,
                   max_bytes=50_000)
    encoded = routed.encoded()
    assert len(encoded) >= 3 and all(len(v) <= 50_000 for _, v in encoded)
    assert sum(len(decode_work(v)[0]) for _, v in encoded) == 400


def test_dead_letter_keeps_raw_bytes_up_to_a_cap():
    small = deadletter_doc(Rejection("invalid_json", "x", b"{oops", _src(5)), T0, "router")
    assert base64.b64decode(small["raw"]) == b"{oops" and small["raw_truncated"] is False
    huge = b"x" * (MAX_RAW_BYTES + 10)
    doc = deadletter_doc(Rejection("invalid_json", "x", huge, _src(6)), T0, "router")
    assert doc["raw_size"] == len(huge) and doc["raw_truncated"] is True
    assert len(base64.b64decode(doc["raw"])) == MAX_RAW_BYTES
