"""Visit records and their classification (stream/rules/visit_records.py,
classification.py): one record per settled visit, written again when what it says changes;
the late and missed policy's fields (5.5, 5.8); the classification suggested from evidence,
``unknown`` where the evidence is silent, never ``no``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from stream.timeutil import format_instant
from tests.factories import T0, event, north_of_home, visit
from tests.unit.stream.harness import Harness
from tests.unit.stream.rules.test_cases import act, close, decide

SCHEMA = json.loads((Path(__file__).resolve().parents[4] / "stream" / "contract" / "schemas"
                     / "visit.schema.json").read_text())
LATE_AT, MISSED_AT = T0 + 900, T0 + 1800
END = T0 + 1800  # 30 minutes
NO_CHECK_OUT_AT = END + 1800


def _valid(h: Harness) -> None:
    for r in h.records:
        jsonschema.validate(r, SCHEMA)


def _cls(r: dict[str, Any]) -> tuple[str, str | None]:
    c = r["classification"]
    return c["service_side_disruption"], c["suggested_classification"]


def test_a_visit_delivered_as_rostered_has_one_record_at_its_check_out():
    h = Harness()
    h.roster(visit())
    h.events(event(at=T0 + 60))
    assert h.records == []  # not settled while the worker is there
    h.events(event("check_out", at=END + 30))
    (r,) = h.records
    assert (r["outcome"], r["timeliness"], r["delayed_s"]) == ("attended", "on_time", 60.0)
    assert r["workers"][0]["role"] == "rostered"
    assert r["workers"][0]["duration_s"] == pytest.approx(END + 30 - T0 - 60)
    assert r["actual_duration_s"] == pytest.approx(END + 30 - T0 - 60)
    assert r["location"] == "verified" and not r["extended"] and r["escalations"] == []
    assert _cls(r) == ("no", None)
    assert r["classification"]["decided"] is None
    h.at(NO_CHECK_OUT_AT + 60)
    assert len(h.records) == 1  # its no-check-out deadline writes nothing again
    _valid(h)


def test_a_missed_visit_is_settled_at_its_no_check_out_deadline_and_corrected_later():
    h = Harness()
    h.roster(visit())
    h.at(NO_CHECK_OUT_AT - 1)
    assert h.records == []
    h.at(NO_CHECK_OUT_AT)
    r = h.record()
    assert (r["outcome"], r["timeliness"], r["arrived_at"]) == ("missed", "missed", None)
    assert {e["kind"] for e in r["escalations"]} == {"late", "missed"}
    assert r["cause"] == "unknown"
    # Nothing says why: unknown, never no; a person reviews it.
    assert _cls(r) == ("unknown", "needs_review")
    # The worker's phone delivers a check-in made long after the start: the record is
    # written again, and again at the check-out.
    h.events(event(at=NO_CHECK_OUT_AT + 60))
    assert h.record()["outcome"] == "attended_no_check_out"
    h.events(event("check_out", at=NO_CHECK_OUT_AT + 1200))
    r = h.record()
    assert (r["outcome"], r["timeliness"]) == ("attended", "missed")
    assert r["delayed_s"] == pytest.approx(NO_CHECK_OUT_AT + 60 - T0)
    assert len(h.records) == 3
    _valid(h)


def test_late_is_told_by_the_device_times_and_an_offline_phone_is_not_late():
    h = Harness()
    h.roster(visit(), visit("v2", client_id="c2"))
    h.at(LATE_AT + 1)  # both late, as far as Kafka knew
    h.events(event(at=LATE_AT + 300))
    h.events(event(at=T0 + 120, visit_id="v2", client_id="c2"), stamps=[LATE_AT + 400])
    h.events(event("check_out", at=END + 400), event("check_out", at=END + 400,
                                                      visit_id="v2", client_id="c2"))
    late, offline = h.record("v1"), h.record("v2")
    assert late["timeliness"] == "late" and late["delayed_s"] == pytest.approx(LATE_AT + 300 - T0)
    assert _cls(late) == ("unknown", "needs_review")
    assert offline["timeliness"] == "on_time"
    assert [(e["kind"], e["status"]) for e in offline["escalations"]] == [("late", "resolved")]
    _valid(h)


def test_a_late_reassignment_is_service_side_and_makes_the_failure_a_service_failure():
    h = Harness()
    h.roster(visit())
    h.clock.set(T0 - 1200)
    h.roster(visit(workers=("w2",)))
    h.at(LATE_AT + 1)
    h.events(event(at=LATE_AT + 200, worker_id="w2"))
    h.events(event("check_out", at=END + 200, worker_id="w2"))
    r = h.record()
    (change,) = r["roster_changes"]
    assert change == {"change": "reassigned", "at": format_instant(T0 - 1200),
                      "before_start_s": 1200.0, "late": True}
    assert r["classification"]["disruption_evidence"] == ["late_roster_change", "reassigned"]
    assert _cls(r) == ("yes", "service_failure")
    assert r["cause"] == "late_roster_change"
    _valid(h)


def test_an_early_reassignment_delivered_on_time_is_a_disruption_but_no_failure():
    h = Harness(start=T0 - 4 * 3600)
    h.roster(visit())
    h.clock.set(T0 - 7200)
    h.roster(visit(workers=("w2",)))
    h.events(event(at=T0, worker_id="w2"))
    h.events(event("check_out", at=END, worker_id="w2"))
    assert _cls(h.record()) == ("yes", None)
    assert h.record()["classification"]["disruption_evidence"] == ["reassigned"]


def test_a_substitute_who_came_is_not_a_visit_delivered_as_rostered():
    h = Harness()
    h.roster(visit())
    h.events(event(at=T0, worker_id="w9"))
    h.events(event("check_out", at=END, worker_id="w9"))
    r = h.record()
    assert [w["role"] for w in r["workers"]] == ["substitute"]
    assert _cls(r) == ("unknown", None)


def test_a_cancellation_is_settled_at_once_and_one_after_the_deadlines_keeps_the_failure():
    h = Harness(start=T0 - 4 * 3600)
    h.roster(visit(), visit("v2", client_id="c2"))
    h.clock.set(T0 - 7200)
    h.roster(visit(status="cancelled"))
    r = h.record()
    assert (r["outcome"], r["timeliness"]) == ("cancelled", "cancelled")
    assert r["roster_changes"][0]["change"] == "cancelled" and not r["roster_changes"][0]["late"]
    assert _cls(r) == ("unknown", None)
    h.at(MISSED_AT + 300)
    h.roster(visit("v2", client_id="c2", status="cancelled"))
    r = h.record("v2")
    assert (r["outcome"], r["timeliness"]) == ("cancelled", "missed")
    assert _cls(r) == ("yes", "service_failure")
    assert r["classification"]["disruption_evidence"] == ["late_cancellation"]
    _valid(h)


def test_a_call_from_the_home_phone_shows_someone_was_there():
    h = Harness()
    h.roster(visit(), visit("v2", client_id="c2"))
    h.events(event(at=T0, method="telephony"),
             event(at=T0, method="telephony", visit_id="v2", client_id="c2",
                   caller_number="07700 900999"))
    h.events(event("check_out", at=END), event("check_out", at=END, visit_id="v2",
                                               client_id="c2"))
    assert h.record("v1")["contactability"] == "someone_home"
    assert h.record("v2")["contactability"] == "unknown"
    assert h.record("v2")["location"] == "unverified"


def test_a_worker_who_left_within_minutes_of_checking_in_at_the_home_suggests_no_access():
    h = Harness()
    h.roster(visit(), visit("v2", client_id="c2"))
    h.events(event(at=T0), event(at=T0, visit_id="v2", client_id="c2",
                                 lat=north_of_home(1000)[0]))
    h.events(event("check_out", at=T0 + 120),
             event("check_out", at=T0 + 120, visit_id="v2", client_id="c2"))
    assert _cls(h.record("v1")) == ("unknown", "access_barrier_possible")
    # Checked in away from the home: no evidence that anyone was at the door.
    assert h.record("v2")["location"] == "mismatch"
    assert _cls(h.record("v2")) == ("unknown", None)


def test_person_declined_only_on_a_case_closed_as_client_declined():
    h = Harness(cases=True)
    h.roster(visit())
    h.at(NO_CHECK_OUT_AT)
    assert _cls(h.record()) == ("unknown", "needs_review")
    n = len(h.records)
    act(h, decide(NO_CHECK_OUT_AT + 60, eid="v1:missed"))
    act(h, close(NO_CHECK_OUT_AT + 70, "client_declined", eid="v1:missed"))
    assert len(h.records) == n + 2  # each change to its case writes the record again
    r = h.record()
    assert _cls(r) == ("unknown", "person_declined")
    (missed,) = [e for e in r["escalations"] if e["kind"] == "missed"]
    assert missed["final_outcome_code"] == "client_declined"
    assert missed["closed_at"] == format_instant(NO_CHECK_OUT_AT + 70)
    _valid(h)


def test_records_can_be_turned_off():
    h = Harness(visit_records=False)
    h.roster(visit())
    h.events(event(at=T0))
    h.events(event("check_out", at=END))
    h.at(NO_CHECK_OUT_AT)
    assert h.records == []


def test_the_quiet_visits_short_build_gives_the_full_builds_record(monkeypatch):
    from stream.rules import visit_records

    def day(fast: bool) -> list[dict[str, Any]]:
        monkeypatch.setattr(visit_records, "FAST", fast)
        h = Harness()
        h.roster(*[visit(f"v{i}", client_id=f"c{i}") for i in range(5)])
        h.events(event(at=T0 + 60, visit_id="v0", client_id="c0"),
                 event(at=T0, visit_id="v1", client_id="c1", method="telephony"),
                 event(at=T0, visit_id="v2", client_id="c2", method="nfc"),
                 event(at=T0 + 30, visit_id="v3", client_id="c3"),
                 event(at=T0, visit_id="v4", client_id="c4"))
        h.events(event("check_out", at=END, visit_id="v0", client_id="c0"),
                 event("check_out", at=END + 60, visit_id="v1", client_id="c1"),
                 event("check_out", at=END + 960, visit_id="v2", client_id="c2",
                       method="nfc"),  # extended
                 event("check_out", at=T0 + 150, visit_id="v3", client_id="c3"),  # no access
                 event("check_out", at=END, visit_id="v4", client_id="c4", method="qr",
                       tag_id="tag-1"))
        return h.records

    fast, full = day(True), day(False)
    assert len(fast) == 5 and fast == full
    assert {r["classification"]["suggested_classification"] for r in fast} == {
        None, "access_barrier_possible"}
