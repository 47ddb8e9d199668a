"""Controlled recovery through real `ecm worker` processes on the embedded broker: every
action type, every refusal and every breach, and a kill -9 and a restart in the middle of
cases, with no breach lost and none published twice."""

from __future__ import annotations

import base64
import time
from collections import Counter
from typing import Any

import orjson
import pytest

from stream.timeutil import format_instant
from tests.cluster import Reader, produce
from tests.factories import HOME, event, visit

pytestmark = pytest.mark.integration

# Short deadlines, so that the breaches fall due within the test.
CASES = {"case_owner_sla_s": 12.0, "case_pathway_sla_s": 20.0,
         "case_owner_sla_p1_s": 6.0, "case_pathway_sla_p1_s": 10.0}


def _missed(n: int, start: float) -> list[dict[str, Any]]:
    """Visits nobody attends: each raises late at once and missed 2 s later."""
    return [visit(f"v{i}", client_id=f"c{i}", start=start - 1, late_after_s=1,
                  missed_after_s=2, no_checkout_after_s=3600) for i in range(n)]


def _action(eid: str, type_: str, n: int, **fields: Any) -> dict[str, Any]:
    return {"action_id": f"a{n}", "escalation_id": eid, "client_id": eid.split(":")[0]
            .replace("v", "c"), "type": type_, "at": format_instant(time.time()), "by": "u1",
            **fields}


def _latest(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        held = out.get(r["escalation_id"])
        if held is None or r.get("revision", 1) >= held.get("revision", 1):
            out[r["escalation_id"]] = r
    return out


def _introduced(records: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """Each (escalation, stage) breach, counted in every snapshot that adds it."""
    seen: dict[str, set[str]] = {}
    count: Counter[tuple[str, str]] = Counter()
    for r in sorted(records, key=lambda r: (r["escalation_id"], r.get("revision", 1))):
        before = seen.get(r["escalation_id"], set())
        now = {b["stage"] for b in r.get("breaches") or ()}
        for stage in now - before:
            count[(r["escalation_id"], stage)] += 1
        seen[r["escalation_id"]] = now
    return count


def _refusals(dead: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    for d in dead:
        doc = orjson.loads(base64.b64decode(d["raw"]))
        if isinstance(doc, dict) and "action_id" in doc:
            out[doc["action_id"]] = d["reason"]
    return out


def test_every_action_refusal_and_breach(settings, spawn_worker):
    settings = settings.with_(**CASES)
    worker = spawn_worker("w", **CASES)
    worker.wait_ready()
    reader = Reader(settings, settings.topic_escalations, settings.topic_deadletter)
    esc = reader.records[settings.topic_escalations]
    produce(settings, settings.topic_roster, [_missed(6, time.time())])
    reader.until(lambda r: sum(1 for e in esc if e["kind"] == "missed") >= 6, timeout_s=60)
    acts = settings.topic_actions
    deadline = format_instant(time.time() + 25)

    def wait(done: Any, timeout_s: float, quiet_s: float = 0.0) -> None:
        try:
            reader.until(done, timeout_s=timeout_s, quiet_s=quiet_s)
        except AssertionError as exc:
            raise AssertionError((_refusals(reader.records[settings.topic_deadletter]), {
                e: (r["status"], r["breaches"], r["case"]["verification"])
                for e, r in _latest(esc).items()})) from exc

    # Each case's actions go in one message: an array keeps its order, where unkeyed
    # messages may reach the case's partition in any order (docs/contract.md).
    # v0: the whole pathway, verified by the recovery worker's own check-in, closed.
    produce(settings, acts, [[_action("v0:missed", "acknowledge", 1, owner_id="m1"),
                              _action("v0:missed", "assign_recovery", 2,
                                      recovery_action_code="immediate_replacement",
                                      assigned_worker_id="w5", recovery_deadline=deadline)]])
    # v1: nobody acts: owner, then pathway breaches. v2: refusals of every kind.
    produce(settings, acts, [[
        {k: v for k, v in _action("v2:missed", "acknowledge", 10).items()},  # no owner_id
        _action("v2:missed", "assign_recovery", 11, recovery_action_code="teleport",
                assigned_worker_id="w5", recovery_deadline=deadline),
        _action("v9:missed", "acknowledge", 12, owner_id="m1"),
        _action("v2:missed", "complete_recovery", 13, service_outcome="ok",
                member_condition="ok"),
        _action("v2:missed", "acknowledge", 14, owner_id="m1"),
        _action("v2:missed", "acknowledge", 14, owner_id="m2")]])  # the same id again
    # v3: a recovery nobody verifies: recovery breach, and a close the evidence refuses.
    produce(settings, acts, [[_action("v3:missed", "acknowledge", 20, owner_id="m1"),
                              _action("v3:missed", "assign_recovery", 21,
                                      recovery_action_code="immediate_replacement",
                                      assigned_worker_id="w6",
                                      recovery_deadline=format_instant(time.time() + 4))]])
    # v4: declined, on a recorded decision. v5: a welfare call, completed and closed.
    produce(settings, acts, [[
        _action("v4:missed", "record_decision", 30, action_type="declined_by_phone",
                reviewer_id="r1"),
        _action("v4:missed", "close", 31, validation_status="validated",
                final_outcome_code="client_declined")], [
        _action("v5:missed", "acknowledge", 40, owner_id="m1"),
        _action("v5:missed", "assign_recovery", 41, recovery_action_code="welfare_call",
                recovery_deadline=deadline),
        _action("v5:missed", "complete_recovery", 42, service_outcome="call_made",
                member_condition="well"),
        _action("v5:missed", "close", 43, validation_status="validated",
                final_outcome_code="recovered")]])
    wait(lambda r: _latest(esc).get("v0:missed", {}).get("status") == "recovery_assigned",
         30)
    produce(settings, settings.topic_events, [event(at=time.time(), visit_id="v0",
                                                    client_id="c0", worker_id="w5",
                                                    lat=HOME[0], lon=HOME[1])])
    wait(lambda r: (_latest(esc)["v0:missed"]["case"]["verification"] is not None
                    and _latest(esc)["v3:missed"]["breaches"]), 30)
    produce(settings, acts, [[
        _action("v0:missed", "complete_recovery", 3, service_outcome="care_delivered",
                member_condition="stable"),
        _action("v0:missed", "close", 4, validation_status="validated",
                final_outcome_code="recovered")], [
        _action("v3:missed", "complete_recovery", 22, service_outcome="care_delivered",
                member_condition="stable"),
        _action("v3:missed", "close", 23, validation_status="validated",
                final_outcome_code="recovered")]])

    def settled(_: Reader) -> bool:
        latest = _latest(esc)
        return (latest["v0:missed"]["status"] == "closed"
                and len(latest["v1:missed"]["breaches"]) == 2
                and {b["stage"] for b in latest["v3:missed"]["breaches"]} >= {"closure"})

    try:
        wait(settled, 90, 3)
    finally:
        reader.close()
    latest = _latest(esc)
    v0 = latest["v0:missed"]
    assert v0["breaches"] == [] and v0["level"] == 1
    assert v0["case"]["verification"]["worker_id"] == "w5"
    assert v0["case"]["closure"]["final_outcome_code"] == "recovered"
    assert not [e for e in esc if e["escalation_id"] == "v0:wrong_worker"]
    v1 = latest["v1:missed"]
    assert [(b["stage"], b["level"]) for b in v1["breaches"]] == [("owner", 2), ("pathway", 3)]
    assert v1["status"] == "open"
    v3 = latest["v3:missed"]
    assert [b["stage"] for b in v3["breaches"]][:1] == ["recovery"]
    assert v3["status"] == "recovery_completed" and v3["level"] == 3
    refused = _refusals(reader.records[settings.topic_deadletter])
    assert latest["v4:missed"]["status"] == "closed", (refused, latest["v4:missed"])
    assert latest["v5:missed"]["status"] == "closed"
    refused = _refusals(reader.records[settings.topic_deadletter])
    assert {k: refused.get(k) for k in ("a10", "a11", "a12", "a13", "a14", "a23")} == {
        "a10": "missing_field", "a11": "invalid_value", "a12": "unknown_escalation",
        "a13": "not_allowed", "a14": "duplicate_action", "a23": "not_allowed"}
    assert max(_introduced(esc).values()) == 1  # no breach published twice


def test_a_kill_and_a_restart_mid_case_lose_no_breach_and_repeat_none(settings, spawn_worker):
    settings = settings.with_(**CASES)
    first = spawn_worker("first", **CASES, store="rocksdb://")
    second = spawn_worker("second", **CASES)
    first.wait_ready()
    second.wait_ready()
    reader = Reader(settings, settings.topic_escalations)
    esc = reader.records[settings.topic_escalations]
    n = 16
    produce(settings, settings.topic_roster, [_missed(n, time.time())])
    reader.until(lambda r: sum(1 for e in esc if e["kind"] == "missed") >= n, timeout_s=60)
    # Half the cases get an owner in time; the other half breach, while a worker is killed
    # and, later, started again.
    produce(settings, settings.topic_actions, [
        _action(f"v{i}:missed", "acknowledge", 100 + i, owner_id="m1") for i in range(0, n, 2)])
    time.sleep(3)
    first.kill()
    time.sleep(8)
    first.start()
    first.wait_ready()

    def breached(_: Reader) -> bool:
        latest = _latest(esc)
        return all(len(latest[f"v{i}:missed"]["breaches"]) == (1 if i % 2 == 0 else 2)
                   for i in range(n))

    try:
        reader.until(breached, timeout_s=120, quiet_s=8)
    finally:
        reader.close()
    latest = _latest(esc)
    for i in range(n):
        stages = [b["stage"] for b in latest[f"v{i}:missed"]["breaches"]]
        assert stages == (["pathway"] if i % 2 == 0 else ["owner", "pathway"]), (i, stages)
    assert max(_introduced(esc).values()) == 1, [k for k, v in _introduced(esc).items() if v > 1]
