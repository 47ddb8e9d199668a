"""``ecm watch`` prints each escalation record, and a line saying it skipped one for a
record that is not one (corrupt, truncated, foreign), instead of stopping."""

from __future__ import annotations

import orjson

from stream.watch import describe, line
from tests.factories import T0, visit
from tests.unit.stream.harness import Harness


def test_a_record_that_is_not_an_escalation_is_skipped():
    h = Harness()
    h.roster(visit("v1"))
    h.at(T0 + 900)
    record = h.by_id("v1:late")
    value = orjson.dumps(record)
    assert line(value) == describe(record)
    for bad in (value[:40], b"\xff\xfe", b"[1, 2]", b'{"escalation_id": 7}', None,
                orjson.dumps({**record, "evidence": 3})):
        assert line(bad) is None, bad
