"""The bounded contract: input that once stopped a worker is a counted rejection, and
whatever the contract accepts re-encodes, fits the internal topics and has deadlines that
compute (stream/contract/bounds.py). Each case runs through the worker's stages in process,
keyed (validated from the bytes on its own partition) and unkeyed (decoded and forwarded)."""

from __future__ import annotations

import orjson
import pytest

from stream.topics import partition_for
from tests.factories import T0, event, visit
from tests.unit.stream.inprocess import Worker

KEYED, UNKEYED = True, False


def _send(w: Worker, topic: str, docs: list, keyed: bool, client: str = "c1") -> None:
    value = docs if isinstance(docs, bytes) else orjson.dumps(docs)
    if keyed:
        w.keyed(topic, value, client)
    else:
        # On a partition its client does not hash to, so that the record is forwarded.
        w.send(topic, value, next(p for p in range(4) if p != partition_for(client, 4)))


@pytest.mark.parametrize("keyed", [KEYED, UNKEYED])
def test_a_number_beyond_double_range_in_an_unknown_field(keyed):
    w = Worker()
    _send(w, "ecm.roster", [visit("v1")], keyed)
    raw = orjson.dumps([event(at=T0 - 300, event_id="e1")])
    value = raw.replace(b'"method"', b'"extra":1e400,"method"')
    _send(w, "ecm.events", value, keyed)
    # The one-pass decoder ignores the unknown field; the full parse refuses the number.
    assert w.accepted["event"] + len(w.rejections) == 1
    if keyed:
        assert w.accepted["event"] == 1
        # A resend of it is a duplicate whose dead letter needs its bytes: the message's.
        _send(w, "ecm.events", value, keyed)
        assert [r.reason for r in w.rejections] == ["duplicate_event"]
        assert w.rejections[0].raw == value
    else:
        assert [r.reason for r in w.rejections] == ["invalid_json"]


@pytest.mark.parametrize("keyed", [KEYED, UNKEYED])
def test_deep_nesting_is_rejected_not_raised(keyed):
    w = Worker()
    deep = b"[" * 10_000 + b"]" * 10_000
    _send(w, "ecm.events", deep, keyed)
    assert w.reasons() == {"invalid_json": 1}
    # Deeper than the bounds but within the parser's: the record itself is rejected, unless
    # it is validated from the bytes, which never carries a field it does not know.
    _send(w, "ecm.roster", [visit("v1")], keyed)
    nested = event(at=T0 - 300, extra=orjson.loads(b"[" * 40 + b"]" * 40))
    _send(w, "ecm.events", [nested], keyed)
    if keyed:
        assert w.accepted["event"] == 1 and w.reasons() == {"invalid_json": 1}
    else:
        assert w.reasons()["too_deeply_nested"] == 1
    # A bare array nested past the encoder's depth is "not an object", with its bytes.
    _send(w, "ecm.events", b"[" + b"[" * 300 + b"]" * 300 + b"]", keyed)
    assert w.reasons()["not_an_object"] == 1


@pytest.mark.parametrize("keyed", [KEYED, UNKEYED])
def test_huge_strings_and_arrays_never_reach_the_internal_topics(keyed):
    w = Worker()
    _send(w, "ecm.roster", [visit("v1", notes="x" * 1_000_000)], keyed)
    assert w.reasons() == {"message_too_large": 1}
    _send(w, "ecm.roster", [visit("v2", notes="x" * 200_000)], keyed)
    _send(w, "ecm.roster", [visit("v3", readings=[1] * 200_000)], keyed)
    if keyed:  # ignored, never carried on
        assert w.accepted["roster"] == 2
    else:
        assert w.reasons()["value_too_large"] == 2
    # Known fields are bounded on both paths.
    _send(w, "ecm.roster", [visit("v4", client_phones=["1"] * 200)], keyed)
    _send(w, "ecm.events", [event(at=T0 - 300, gateway_id="g" * 5000)], keyed)
    assert w.reasons()["invalid_value"] == 2


@pytest.mark.parametrize("keyed", [KEYED, UNKEYED])
@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59Z",
                                     "1999-12-31T23:59:59Z", "2101-01-01T00:00:00Z"])
def test_instants_outside_the_years_accepted_are_invalid_time(keyed, instant):
    w = Worker()
    _send(w, "ecm.roster", [dict(visit("v1"), scheduled_start=instant)], keyed)
    _send(w, "ecm.events", [dict(event(at=T0 - 300), occurred_at=instant)], keyed)
    assert w.reasons() == {"invalid_time": 2}
    w.sweep(T0 + 400_000)  # nothing in state whose deadline cannot be written


@pytest.mark.parametrize("keyed", [KEYED, UNKEYED])
def test_an_empty_object_null_or_number_in_a_batch_is_dead_lettered(keyed):
    w = Worker()
    _send(w, "ecm.events", b'[{}, null, 7, "x", []]', keyed)
    assert sorted(r.source.index for r in w.rejections) == [0, 1, 2, 3, 4]
    assert w.reasons() == {"missing_field": 1, "not_an_object": 4}
