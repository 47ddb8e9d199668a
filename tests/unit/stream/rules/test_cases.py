"""Controlled recovery: an escalation's case, the actions that move it, its deadlines and
their breaches, and the evidence that verifies a recovery (stream/rules/cases.py).

The seed (missed-visit-recovery-escalation.txt) asks for a named owner within 10 minutes,
a recovery pathway within 15, a recovery within its own deadline, elevation when nobody
acts, and closure only on validated evidence."""

from __future__ import annotations

from typing import Any

import pytest

from stream.timeutil import format_instant
from tests.factories import T0, event, north_of_home, visit
from tests.unit.stream.harness import Harness, Log

MISSED_AT = T0 + 1800  # the default missed deadline
EID = "v1:missed"


def _missed(**settings: Any) -> Harness:
    """A visit nobody attends: its late and then its missed escalation are open."""
    h = Harness(cases=True, **settings)
    h.roster(visit())
    h.at(MISSED_AT)
    assert h.by_id(EID)["status"] == "open"
    return h


_ids = iter(range(1, 1_000_000))


def action(type_: str, *, at: float, eid: str = EID, client_id: str = "c1", by: str = "u1",
           action_id: str | None = None, **fields: Any) -> dict[str, Any]:
    doc = {"action_id": action_id or f"a{next(_ids)}", "escalation_id": eid,
           "client_id": client_id, "type": type_, "at": format_instant(at), "by": by}
    doc.update(fields)
    return doc


def ack(at: float, **kw: Any) -> dict[str, Any]:
    return action("acknowledge", at=at, owner_id=kw.pop("owner_id", "m1"), **kw)


def assign(at: float, *, worker: str | None = "w5", deadline: float, code: str =
           "immediate_replacement", **kw: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"recovery_action_code": code,
                              "recovery_deadline": format_instant(deadline)}
    if worker is not None:
        fields["assigned_worker_id"] = worker
    return action("assign_recovery", at=at, **fields, **kw)


def complete(at: float, **kw: Any) -> dict[str, Any]:
    return action("complete_recovery", at=at, service_outcome="care_delivered",
                  member_condition="stable", **kw)


def close(at: float, outcome: str = "recovered", **kw: Any) -> dict[str, Any]:
    return action("close", at=at, validation_status=kw.pop("validation_status", "validated"),
                  final_outcome_code=outcome, **kw)


def decide(at: float, **kw: Any) -> dict[str, Any]:
    return action("record_decision", at=at, action_type="client_declined_visit",
                  reviewer_id="r1", **kw)


def snapshots(h: Harness, eid: str = EID) -> list[dict[str, Any]]:
    return [e for e in h.escalations if e["escalation_id"] == eid]


def last(h: Harness, eid: str = EID) -> dict[str, Any]:
    return snapshots(h, eid)[-1]


def act(h: Harness, *docs: dict[str, Any]) -> None:
    """Deliver actions as they are decided: the clock moves to the latest ``at``."""
    latest = max(T0 if d.get("at") is None else _at(d) for d in docs)
    if latest > h.clock.now():
        h.clock.set(latest)
    h.feed(*[("action", d) for d in docs])


def _at(d: dict[str, Any]) -> float:
    from stream.timeutil import parse_instant
    return parse_instant(d["at"]) or T0


# ---- the snapshot -----------------------------------------------------------------------

def test_every_escalation_opens_a_case_at_level_one_with_its_deadlines():
    h = _missed()
    e = h.by_id(EID)
    assert e["level"] == 1 and e["breaches"] == []
    assert e["case"]["owner"] is None and e["case"]["pathway"] is None
    assert e["case"]["owner_due"] == format_instant(MISSED_AT + 600)
    assert e["case"]["pathway_due"] == format_instant(MISSED_AT + 900)
    review = Harness(cases=True)
    review.roster(visit())
    lat, lon = north_of_home(2000)
    review.events(event(at=T0, lat=lat, lon=lon))
    m = review.by_id("v1:location_mismatch")
    assert m["case"]["owner_due"] == format_instant(T0 + 600)
    assert m["case"]["pathway_due"] is None  # a review kind: an owner deadline only


def test_acknowledge_names_the_owner():
    h = _missed()
    act(h, ack(MISSED_AT + 60, owner_id="m7", by="u3"))
    s = last(h)
    assert s["status"] == "acknowledged"
    assert s["case"]["owner"]["owner_id"] == "m7"
    assert s["case"]["owner"]["by"] == "u3"
    assert s["case"]["owner"]["at"] == format_instant(MISSED_AT + 60)


def test_the_whole_pathway_to_a_verified_close():
    h = _missed()
    act(h, ack(MISSED_AT + 60))
    act(h, assign(MISSED_AT + 120, deadline=MISSED_AT + 3600))
    assert last(h)["status"] == "recovery_assigned"
    h.events(event(at=MISSED_AT + 1800, worker_id="w5"))
    s = last(h)
    assert s["case"]["verification"]["worker_id"] == "w5"
    assert s["case"]["verification"]["in_time"] is True
    assert s["status"] == "recovery_assigned"  # not closed by itself
    assert not [e for e in h.escalations if e["kind"] == "wrong_worker"]
    act(h, complete(MISSED_AT + 2400))
    assert last(h)["status"] == "recovery_completed"
    act(h, close(MISSED_AT + 2500))
    s = last(h)
    assert s["status"] == "closed" and s["level"] == 1 and s["breaches"] == []
    assert s["case"]["closure"]["final_outcome_code"] == "recovered"
    h.at(MISSED_AT + 7200)  # every deadline long past: nothing more
    assert last(h)["status"] == "closed" and h.rejections == []


# ---- refusals ---------------------------------------------------------------------------

@pytest.mark.parametrize(("doc", "reason"), [
    ({"type": "acknowledge"}, "missing_field"),  # no owner_id
    ({"type": "assign_recovery", "recovery_action_code": "immediate_replacement",
      "recovery_deadline": format_instant(T0 + 9000)}, "missing_field"),  # no worker
    ({"type": "assign_recovery", "recovery_action_code": "teleport",
      "assigned_worker_id": "w5", "recovery_deadline": format_instant(T0 + 9000)},
     "invalid_value"),
    ({"type": "record_decision", "action_type": "x"}, "missing_field"),  # no reviewer_id
    ({"type": "complete_recovery", "service_outcome": "ok"}, "missing_field"),
    ({"type": "close", "validation_status": "validated", "final_outcome_code": "failed"},
     "invalid_value"),
    ({"type": "dance"}, "invalid_value"),
])
def test_an_action_missing_what_its_type_requires_is_dead_lettered(doc, reason):
    h = _missed()
    base = action("acknowledge", at=MISSED_AT + 60)
    del base["type"]
    act(h, {**base, **doc})
    assert h.reasons() == [reason]
    assert last(h)["status"] == "open"


def test_an_action_for_an_unknown_escalation_is_refused_at_once():
    h = _missed()
    act(h, ack(MISSED_AT + 60, eid="v9:missed"))
    assert h.reasons() == ["unknown_escalation"]


def test_a_stage_that_forbids_the_action_refuses_it():
    h = _missed()
    act(h, assign(MISSED_AT + 60, deadline=MISSED_AT + 3600))  # no owner yet
    act(h, complete(MISSED_AT + 70))  # no pathway
    act(h, close(MISSED_AT + 80))  # no completion
    assert h.reasons() == ["not_allowed"] * 3
    assert last(h)["status"] == "open"


def test_nothing_is_allowed_on_a_resolved_case():
    h = _missed()
    h.events(event(at=MISSED_AT + 100))  # the rostered worker arrives after all
    assert last(h)["status"] == "resolved"
    act(h, ack(MISSED_AT + 200))
    assert h.reasons() == ["not_allowed"]


def test_a_repeated_action_id_is_a_duplicate_and_a_replay_is_skipped():
    h = _missed()
    doc = ack(MISSED_AT + 60, action_id="a-dup")
    act(h, doc)
    n = len(h.escalations)
    act(h, ack(MISSED_AT + 70, action_id="a-dup", owner_id="m9"))
    assert h.reasons() == ["duplicate_action"]
    assert len(h.escalations) == n and last(h)["case"]["owner"]["owner_id"] == "m1"
    # The same record from the same source position: a replay, skipped.
    src = h.source("ecm.actions")
    h.feed(("action", ack(MISSED_AT + 80, action_id="a-rep"), src))
    n = len(h.escalations)
    h.feed(("action", ack(MISSED_AT + 80, action_id="a-rep"), src))
    assert len(h.escalations) == n and h.reasons() == ["duplicate_action"]


def test_an_action_decided_in_the_future_is_refused():
    h = _missed()
    act(h, ack(MISSED_AT + 60))
    h.feed(("action", ack(MISSED_AT + 3600)))  # the clock stays at MISSED_AT + 60
    assert h.reasons() == ["clock_in_future"]


# ---- deadlines and breaches ------------------------------------------------------------

def test_no_owner_by_the_owner_deadline_is_a_breach_that_raises_the_level():
    h = _missed()
    h.at(MISSED_AT + 599)
    assert last(h)["level"] == 1
    h.at(MISSED_AT + 600)
    s = last(h)
    assert s["status"] == "open" and s["level"] == 2
    assert s["breaches"] == [{"stage": "owner", "due": format_instant(MISSED_AT + 600),
                              "detected_at": format_instant(MISSED_AT + 600), "level": 2}]
    h.at(MISSED_AT + 900)  # and no pathway either
    s = last(h)
    assert s["level"] == 3 and [b["stage"] for b in s["breaches"]] == ["owner", "pathway"]
    n = len(snapshots(h))
    h.at(MISSED_AT + 5000)
    assert len(snapshots(h)) == n  # each stage breaches once


@pytest.mark.parametrize(("reached", "breached"), [(MISSED_AT + 650, True),
                                                   (MISSED_AT + 550, False)])
def test_an_answer_read_before_a_late_sweep_counts_from_when_it_reached_kafka(
        reached, breached):
    """The case's sweep waits (for its input, or a busy worker): the visit's arrival is read
    first. What decides is when the arrival reached Kafka against the owner deadline, not
    which came first in the worker. Whether resolved or not, the case says so once."""
    h = _missed()
    h.clock.set(MISSED_AT + 700)  # past the owner deadline (MISSED_AT + 600), not swept yet
    h.events(event(at=reached - 5), stamps=[reached])
    assert last(h)["status"] == "resolved"
    assert last(h)["evidence"]["answered_at"] == format_instant(reached)
    # A partition rebuilt now, before the sweep, owes the same breach.
    log = Log(h)
    log.publish()
    copy = log.replay(0, swept=False)
    rebuilt = [e for e in copy.sweep().escalations if e.escalation_id == EID]
    assert [[b["stage"] for b in e.breaches] for e in rebuilt] == (
        [["owner"]] if breached else [])
    h.at(MISSED_AT + 700)
    h.at(MISSED_AT + 5000)
    s = last(h)
    assert s["status"] == "resolved"
    assert [b["stage"] for b in s["breaches"]] == (["owner"] if breached else [])


def test_acting_in_time_publishes_no_breach():
    h = _missed()
    act(h, ack(MISSED_AT + 500))
    act(h, assign(MISSED_AT + 800, worker=None, code="welfare_call",
                  deadline=MISSED_AT + 2000))
    act(h, complete(MISSED_AT + 1900))
    h.at(MISSED_AT + 5000)
    assert last(h)["breaches"] == [] and last(h)["level"] == 1


def test_an_action_received_after_its_breach_still_applies():
    h = _missed()
    h.at(MISSED_AT + 700)
    act(h, ack(MISSED_AT + 710))
    s = last(h)
    assert s["status"] == "acknowledged" and s["level"] == 2
    assert [b["stage"] for b in s["breaches"]] == ["owner"]


def test_p1_deadlines_are_shorter():
    h = Harness(cases=True)
    h.roster(visit(risk_level="critical", time_critical=True, lives_alone=True))
    h.at(MISSED_AT)
    e = h.by_id(EID)
    assert e["priority"] == "P1"
    assert e["case"]["owner_due"] == format_instant(MISSED_AT + 300)
    assert e["case"]["pathway_due"] == format_instant(MISSED_AT + 600)


def test_per_contract_deadlines():
    h = Harness(cases=True, case_contract_slas='{"k9": {"owner_s": 120, "pathway_s": 240}}')
    h.roster(visit(contract_id="k9"))
    h.at(MISSED_AT)
    assert h.by_id(EID)["case"]["owner_due"] == format_instant(MISSED_AT + 120)


def test_the_recovery_deadline_breaches_without_verified_evidence():
    h = _missed()
    act(h, ack(MISSED_AT + 60))
    act(h, assign(MISSED_AT + 120, deadline=MISSED_AT + 1200))
    act(h, complete(MISSED_AT + 1100))  # said done, but w5 never checked in
    h.at(MISSED_AT + 1200)
    s = last(h)
    assert [b["stage"] for b in s["breaches"]] == ["recovery"] and s["level"] == 2


def test_a_completion_after_the_deadline_is_a_recovery_breach():
    h = _missed()
    act(h, ack(MISSED_AT + 60))
    act(h, assign(MISSED_AT + 120, worker=None, code="welfare_call",
                  deadline=MISSED_AT + 1200))
    h.at(MISSED_AT + 1300)
    act(h, complete(MISSED_AT + 1400))
    s = last(h)
    assert [b["stage"] for b in s["breaches"]] == ["recovery"]
    act(h, close(MISSED_AT + 1500))  # "recovered" claims it was in time
    assert h.reasons() == ["not_allowed"]
    assert "deadline" in h.rejections[-1].detail
    act(h, close(MISSED_AT + 1600, "recovered_late"))
    assert last(h)["status"] == "closed"


def test_a_close_the_evidence_does_not_show_is_refused_and_raises_the_level():
    h = _missed()
    act(h, ack(MISSED_AT + 60))
    act(h, assign(MISSED_AT + 120, deadline=MISSED_AT + 3000))
    act(h, complete(MISSED_AT + 600))
    act(h, close(MISSED_AT + 700))  # no verified check-in by w5
    assert h.reasons() == ["not_allowed"]
    assert "verified" in h.rejections[-1].detail
    s = last(h)
    assert s["status"] == "recovery_completed" and s["level"] == 2
    assert [b["stage"] for b in s["breaches"]] == ["closure"]


def test_a_decline_closes_on_a_recorded_decision():
    h = _missed()
    act(h, close(MISSED_AT + 60, "client_declined"))
    assert h.reasons() == ["not_allowed"]
    act(h, decide(MISSED_AT + 70))
    act(h, close(MISSED_AT + 80, "client_declined"))
    assert last(h)["status"] == "closed"
    assert last(h)["case"]["decisions"][0]["reviewer_id"] == "r1"


def test_levels_stop_at_three():
    h = _missed()
    act(h, ack(MISSED_AT + 700))  # after the owner breach: level 2
    h.at(MISSED_AT + 900)  # pathway: level 3
    act(h, assign(MISSED_AT + 950, deadline=MISSED_AT + 1000))
    h.at(MISSED_AT + 1000)  # recovery: still 3
    s = last(h)
    assert s["level"] == 3
    assert [(b["stage"], b["level"]) for b in s["breaches"]] == [
        ("owner", 2), ("pathway", 3), ("recovery", 3)]


# ---- arrivals ---------------------------------------------------------------------------

def test_with_a_pathway_the_visits_arrival_is_evidence_not_a_resolution():
    h = _missed()
    act(h, ack(MISSED_AT + 60))
    act(h, assign(MISSED_AT + 120, deadline=MISSED_AT + 3000))
    h.events(event(at=MISSED_AT + 300))  # w1, the rostered worker, after all
    s = last(h)
    assert s["status"] == "recovery_assigned"
    assert s["case"]["arrivals"][0]["worker_id"] == "w1"
    assert s["case"]["verification"] is None


def test_a_recovery_check_in_outside_the_fence_verifies_nothing():
    h = _missed()
    act(h, ack(MISSED_AT + 60))
    act(h, assign(MISSED_AT + 120, deadline=MISSED_AT + 3000))
    lat, lon = north_of_home(2000)
    h.events(event(at=MISSED_AT + 300, worker_id="w5", lat=lat, lon=lon))
    assert last(h)["case"]["verification"] is None


# ---- rebuilt ----------------------------------------------------------------------------

def test_a_rebuilt_partition_keeps_its_cases_and_breaches_once():
    h = _missed()
    log = Log(h)
    log.publish()
    act(h, ack(MISSED_AT + 60))
    act(h, assign(MISSED_AT + 120, deadline=MISSED_AT + 1200))
    log.publish()
    copy = log.replay(0)  # nothing due is raised again
    assert copy.book.records[EID].case.pathway is not None
    copy.clock.set(MISSED_AT + 1200)  # type: ignore[attr-defined]
    breached = [e for e in copy.sweep().escalations if e.escalation_id == EID]
    assert len(breached) == 1 and breached[0].level == 2
    assert copy.sweep().escalations == []
    # The rebuilt partition knows the actions applied: a repeat is a duplicate.
    out = copy.process([("action", ack(MISSED_AT + 70, action_id=last(h)["case"]["history"]
                                       [0]["action_id"]), h.source("ecm.actions"))])
    assert [r.reason for r in out.rejections] == ["duplicate_action"]


def test_the_metrics_see_each_stage_first_met_and_each_breach():
    h = _missed()
    book = h.detector.book
    assert book.open_by_status[("open", "P2")] == 1  # missed; late is P3
    assert book.open_by_status[("open", "P3")] == 1
    act(h, ack(MISSED_AT + 60))
    assert h.last.case_timings == [("owner", "P2", 60.0)]
    assert book.open_by_status[("acknowledged", "P2")] == 1
    act(h, ack(MISSED_AT + 70, owner_id="m2"))  # a change of owner is not a first
    assert h.last.case_timings == []
    h.at(MISSED_AT + 900)
    # The late escalation's owner and pathway; the missed one's pathway (its owner was met).
    assert h.last.case_breaches == [("owner", "P3"), ("pathway", "P3"), ("pathway", "P2")]
    act(h, assign(MISSED_AT + 950, deadline=MISSED_AT + 3000))
    h.events(event(at=MISSED_AT + 1000, worker_id="w5"))
    assert ("recovery", "P2", 1000.0) in h.last.case_timings
    act(h, complete(MISSED_AT + 1100))
    act(h, close(MISSED_AT + 1200))
    assert book.open_by_status[("recovery_assigned", "P2")] == 0
    assert sum(n for (status, _), n in book.open_by_status.items() if status == "closed") == 0
