"""Safeguarding on repeated failure (stream/rules/safeguarding.py): "Multiple missed or late
calls will be classed as a safeguarding issue" (the late and missed policy, 5.11); by
default 2 missed, or 3 late, within 7 days."""

from __future__ import annotations

import json
from typing import Any

import orjson

from stream.clock import ManualClock
from stream.contract import Codec
from stream.rules.detector import PartitionDetector
from tests.factories import T0, event, visit
from tests.unit.stream.harness import Harness, Log

DAY = 86400.0
KIND = "safeguarding_review"


def _reviews(h: Harness) -> list[dict[str, Any]]:
    return [e for e in h.escalations if e["kind"] == KIND and e["revision"] == 1]


def _late(h: Harness, vid: str, start: float, client: str = "c1", **extra: Any) -> None:
    """A visit whose worker comes 20 minutes late: late, not missed."""
    h.roster(visit(vid, client_id=client, start=start, **extra))
    h.at(start + 900)
    h.events(event(at=start + 1200, visit_id=vid, client_id=client))


def _missed(h: Harness, vid: str, start: float, client: str = "c1", **extra: Any) -> None:
    h.roster(visit(vid, client_id=client, start=start, **extra))
    h.at(start + 1800)


def test_three_late_visits_within_seven_days_raise_one_review_with_the_visits_behind_it():
    h = Harness()
    _late(h, "v1", T0)
    _late(h, "v2", T0 + 2 * DAY)
    assert _reviews(h) == []
    _late(h, "v3", T0 + 6 * DAY)
    (r,) = _reviews(h)
    assert r["escalation_id"] == f"safeguarding:c1:v3:late:{KIND}"
    assert r["client_id"] == "c1" and r["priority"] == "P2"
    assert r["recommended_route"] == "safeguarding_referral"
    assert r["evidence"]["visits"] == ["v1", "v2", "v3"]
    assert (r["evidence"]["late"], r["evidence"]["missed"]) == (3, 0)
    assert r["case"]["owner_due"] is not None  # a case: somebody must own it
    # Spent on that review: a fourth late visit raises nothing, three new ones do.
    _late(h, "v4", T0 + 6.5 * DAY)
    _late(h, "v5", T0 + 7 * DAY)
    assert len(_reviews(h)) == 1
    _late(h, "v6", T0 + 7.5 * DAY)
    assert [e["evidence"]["visits"] for e in _reviews(h)][1] == ["v4", "v5", "v6"]


def test_failures_further_apart_than_the_window_do_not_add_up():
    h = Harness()
    _late(h, "v1", T0)
    _late(h, "v2", T0 + 4 * DAY)
    _late(h, "v3", T0 + 8 * DAY)  # v1 is 8 days before: out of the window
    assert _reviews(h) == []
    _late(h, "v4", T0 + 9 * DAY)
    assert _reviews(h)[0]["evidence"]["visits"] == ["v2", "v3", "v4"]


def test_two_missed_visits_raise_it_and_p1_for_a_person_living_alone():
    h = Harness()
    _missed(h, "v1", T0, lives_alone=True)
    _missed(h, "v2", T0 + DAY, lives_alone=True)
    (r,) = _reviews(h)
    assert r["priority"] == "P1" and r["risk_flags"] == ["lives_alone"]
    assert (r["evidence"]["missed"], r["evidence"]["late"]) == (2, 2)
    assert r["escalation_id"] == f"safeguarding:c1:v2:missed:{KIND}"
    assert [f["kind"] for f in r["evidence"]["failures"]] == ["late", "missed", "late", "missed"]


def test_other_people_do_not_add_up_and_contracts_set_their_own_thresholds():
    h = Harness(safeguarding_contracts=json.dumps({"k1": {"missed": 1}}))
    _missed(h, "v1", T0, client="c1")
    _missed(h, "v2", T0 + DAY, client="c2")
    assert _reviews(h) == []
    _missed(h, "v3", T0 + 2 * DAY, client="c3", contract_id="k1")
    (r,) = _reviews(h)
    assert r["client_id"] == "c3" and r["evidence"]["threshold"] == {"missed": 1, "late": 3}


def _rebuild(log: Log, h: Harness) -> PartitionDetector:
    copy = PartitionDetector(0, h.settings, ManualClock(h.clock.now()), Codec())
    copy.restore(log.docs, [orjson.loads(orjson.dumps(r)) for r in h.escalations])
    return copy


def test_the_counts_survive_a_rebuild_long_after_the_visits_were_forgotten():
    h = Harness()
    log = Log(h)
    _late(h, "v1", T0)
    log.publish()
    _late(h, "v2", T0 + 3 * DAY)  # v1 is forgotten by now, its escalations with it
    log.publish()
    assert "v1" not in h.detector.visits
    copy = _rebuild(log, h)
    assert copy.state.failures == h.detector.state.failures
    assert [f[2] for f in copy.state.failures["c1"]] == ["v1", "v2"]


def test_a_late_counted_but_not_yet_in_the_changelog_is_counted_from_the_book():
    h = Harness()
    log = Log(h)
    _late(h, "v1", T0)
    _late(h, "v2", T0 + DAY)
    log.publish()
    h.roster(visit("v3", start=T0 + 2 * DAY))
    log.publish()
    h.at(T0 + 2 * DAY + 900)  # the review is published, then the worker dies: no delta
    (r,) = _reviews(h)
    copy = _rebuild(log, h)
    # The late escalations the book read back are counted, spent on the review it read.
    assert [(f[2], f[3]) for f in copy.state.failures["c1"]] == [
        ("v1", r["escalation_id"]), ("v2", r["escalation_id"]), ("v3", r["escalation_id"])]
    assert r["escalation_id"] in copy.book.records
    copy.clock.set(T0 + 2 * DAY + 1000)
    assert [e.kind for e in copy.sweep().escalations] == []


def test_a_review_is_forgotten_once_its_failures_have_left_the_window():
    h = Harness()
    for i in range(3):
        _late(h, f"v{i}", T0 + i * 3600)
    (r,) = _reviews(h)
    assert r["escalation_id"] in h.detector.book.records
    h.at(T0 + 2 * 3600 + 900 + 7 * DAY)
    assert r["escalation_id"] not in h.detector.book.records
