"""A record in a partition's changelog or escalation topic that cannot be read back (from an
older version, or corrupted) is skipped, and said where it was, instead of stopping the
partition from loading at every restart; a timer that fails is skipped by the sweep."""

from __future__ import annotations

import orjson

from stream.clock import ManualClock
from stream.contract import Codec
from stream.rules.detector import PartitionDetector
from stream.settings import Settings
from stream.state.changelog import dumps
from stream.state.visit import visit_from_fields
from tests.factories import T0, event, visit
from tests.unit.stream.harness import Harness


def _changelog() -> tuple[Harness, list]:
    h = Harness()
    h.roster(visit("v1"), visit("v2", client_id="c2"))
    h.events(event(at=T0 - 3000, visit_id="vx", client_id="c3", event_id="waiting"))
    return h, [orjson.loads(dumps(h.detector.take_delta()))]


def _rebuilt(h: Harness, docs: list, escalations: list = ()) -> PartitionDetector:
    d = PartitionDetector(0, h.settings, ManualClock(h.clock.now()), Codec())
    d.restore(docs, list(escalations))
    return d


def test_unreadable_documents_and_visits_are_skipped_with_their_positions():
    h, docs = _changelog()
    good = docs[0]
    poisoned = [
        good,
        "not an object",                                     # 1: a JSON string
        {"p": 0, "visits": [{"id": "v3", "s": [1, 2]}]},     # 2: fields of the wrong shape
        {"p": 0, "visits": [{"id": "v4", "v": {"visit_id": "v4"}}]},  # 3: fails the contract
        {"p": 0, "visits": "nope"},                          # 4: visits not a list
        {"p": 0, "visits": [], "pa": [{"e": {"event_id": 5}}]},       # 5: a waiting event
        {"p": 0, "visits": [], "deleted": 7},                # 6: deletions not a list
    ]
    d = _rebuilt(h, poisoned, [{"escalation_id": 1}, "x"])
    assert sorted(d.visits) == ["v1", "v2"] and list(d.pending) == ["waiting"]
    assert sorted({(w, i) for w, i, _ in d.skipped}) == [
        ("ecm.escalations", 0), ("ecm.escalations", 1), ("ecm.state", 1), ("ecm.state", 2),
        ("ecm.state", 3), ("ecm.state", 4), ("ecm.state", 5), ("ecm.state", 6)]
    # Nothing of a record's values in what is said of it.
    assert all("v3" not in why and "v4" not in why for _, _, why in d.skipped)
    # The rebuilt partition works: its deadlines fall due as the original's.
    d.clock.set(T0 + 900)
    assert sorted(e.escalation_id for e in d.sweep().escalations) == ["v1:late", "v2:late"]


def test_a_visit_whose_instants_are_out_of_range_is_skipped_at_the_rebuild():
    h, docs = _changelog()
    row = h.detector.visits["v1"].checkpoint_doc({})
    row["s"] = list(row["s"])
    row["s"][3] = -62135596800.0  # the start of year 1, from before the contract bounded it
    d = _rebuilt(h, [*docs, orjson.loads(dumps({"p": 0, "visits": [row]}))])
    assert [(w, i) for w, i, _ in d.skipped] == [("ecm.state", 1)]
    assert d.visits["v1"].visit.start == T0  # the last good record stands


def test_a_timer_that_fails_is_skipped_and_the_sweep_goes_on():
    codec = Codec()
    d = PartitionDetector(0, Settings(), ManualClock(T0 - 600), codec)
    h = Harness()
    h.roster(visit("v1"), visit("v2", client_id="c2"))
    d.restore([orjson.loads(dumps(h.detector.take_delta()))], [])
    # A visit held from before the contract bounded its instants: its deadline cannot be
    # written as a date.
    bad = d.visits["v1"]
    fields = list(orjson.loads(dumps(bad.checkpoint_doc({})))["s"])
    fields[3], fields[4] = -1e13, -1e13 + 1800  # about 315,000 years before year 1
    bad.visit = visit_from_fields(fields, codec.workers)
    d.attendance.schedule(bad)
    d.clock.set(T0 + 2000)
    out = d.sweep()
    assert [e.escalation_id for e in out.escalations] == ["v2:late", "v2:missed"]
    assert [(w, i) for w, i, _ in d.skipped] == [("sweep", -1)]
