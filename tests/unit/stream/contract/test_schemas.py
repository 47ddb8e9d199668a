"""The shipped JSON Schemas describe what the code accepts and what it emits."""

import json
from importlib import resources

import jsonschema
import pytest

from stream.contract import Source
from stream.contract.deadletter import REASONS, deadletter_doc
from stream.rules.scoring import KINDS
from tests.factories import T0, event, north_of_home, visit
from tests.unit.stream.harness import Harness


def _schema(name):
    text = resources.files("stream.contract").joinpath(f"schemas/{name}.schema.json").read_text()
    schema = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def _busy_harness():
    """A run that raises and resolves every kind and rejects several ways, and writes
    visit records of every outcome."""
    h = Harness(safeguarding_missed=1)  # the missed visit e raises a review
    far = north_of_home(3000)
    h.roster(visit("a", client_id="a", lives_alone=True, cognitive_impairment=True),
             visit("b", client_id="b"),
             visit("c", client_id="c", minutes=60), visit("d", client_id="d", minutes=30),
             visit("e", client_id="e"))
    h.at(T0 + 300)
    h.predict("e", T0 + 1500)  # at_risk, resolved when late takes over
    h.at(T0 + 1000)
    h.events(event(at=T0 + 1000, visit_id="a", client_id="a", worker_id="w9"),  # late, wrong
             event(at=T0 + 1000, visit_id="b", client_id="b", lat=far[0], lon=far[1]),
             event(at=T0 + 1000, visit_id="c", client_id="c", method="telephony",
                   caller_number="999"),
             event(at=T0 + 1000, visit_id="d", client_id="d"),
             event(at=T0 + 1000, visit_id=None, client_id="zz"),
             event(at=T0 + 1000, visit_id="e", client_id="nope"))
    h.events(event("check_out", at=T0 + 1100, visit_id="c", client_id="c", method="telephony",
                   caller_number="999"),
             event("check_out", at=T0 + 1000 + 3600, visit_id="d", client_id="d"))
    h.at(T0 + 9000)
    h.events(event("check_out", at=T0 + 9000, visit_id="a", client_id="a", worker_id="w9"))
    h.roster(visit("e", client_id="e", status="cancelled"))
    return h


def test_schema_accepts_what_the_contract_accepts():
    roster = _schema("roster")
    events = _schema("event")
    roster.validate(visit())
    roster.validate(visit(geofence={"type": "Polygon", "coordinates": [
        [[1.0, 52.0], [1.1, 52.0], [1.1, 52.1], [1.0, 52.0]]]}))
    for method in ("gps", "telephony", "nfc", "qr", "manual"):
        events.validate(event(at=T0, method=method))
    with pytest.raises(jsonschema.ValidationError):
        roster.validate(visit(location={"lat": 0, "lon": 0}))
    with pytest.raises(jsonschema.ValidationError):
        events.validate({k: v for k, v in event(at=T0).items() if k != "lat"})


def test_emitted_escalations_and_dead_letters_match_their_schemas():
    h = _busy_harness()
    esc = _schema("escalation")
    for record in h.escalations:
        esc.validate(json.loads(json.dumps(record)))
    visits = _schema("visit")
    assert {r["outcome"] for r in h.records} == {"attended", "attended_no_check_out",
                                                  "missed", "cancelled"}
    for record in h.records:
        visits.validate(record)
    dead = _schema("deadletter")
    assert {r.reason for r in h.rejections} == {"client_mismatch"}
    for r in h.rejections:
        dead.validate(deadletter_doc(r, T0, "detector"))
    dead.validate(deadletter_doc(h.rejections[0].__class__(
        "invalid_json", "x", b"{", Source("ecm.events", 0, 1)), T0, "router"))


def test_busy_run_covers_every_kind():
    kinds = {e["kind"] for e in _busy_harness().escalations}
    assert kinds == set(KINDS)


def test_the_dead_letter_schema_lists_every_reason_the_contract_names():
    schema = json.loads(resources.files("stream.contract").joinpath(
        "schemas/deadletter.schema.json").read_text())
    assert sorted(schema["properties"]["reason"]["enum"]) == sorted(REASONS)



def test_cases_snapshots_and_actions_match_their_schemas():
    from tests.unit.stream.rules import test_cases as tc

    h = tc._missed()
    tc.act(h, tc.ack(tc.MISSED_AT + 60))
    tc.act(h, tc.decide(tc.MISSED_AT + 70))
    tc.act(h, tc.assign(tc.MISSED_AT + 120, deadline=tc.MISSED_AT + 1200))
    h.events(event(at=tc.MISSED_AT + 300))  # the rostered worker: an arrival, kept
    h.events(event(at=tc.MISSED_AT + 600, worker_id="w5"))  # the recovery, verified
    tc.act(h, tc.complete(tc.MISSED_AT + 700))
    tc.act(h, tc.close(tc.MISSED_AT + 800))
    breached = tc._missed()
    breached.at(tc.MISSED_AT + 1000)  # nobody acts: owner and pathway breaches
    esc = _schema("escalation")
    assert {e["status"] for e in h.escalations} >= {
        "open", "acknowledged", "recovery_assigned", "recovery_completed", "closed"}
    assert any(e["breaches"] for e in breached.escalations)
    for record in h.escalations + breached.escalations:
        esc.validate(record)
    actions = _schema("action")
    for doc in (tc.ack(T0), tc.decide(T0), tc.complete(T0), tc.close(T0),
                tc.assign(T0, deadline=T0 + 60),
                tc.assign(T0, worker=None, code="welfare_call", deadline=T0 + 60)):
        actions.validate(doc)
    with pytest.raises(jsonschema.ValidationError):
        actions.validate(tc.assign(T0, worker=None, deadline=T0 + 60))
