"""The checks of an ``ecm.actions`` record: the fields every action has, then those its
type cannot proceed without (missed-visit-recovery-escalation.txt names them for each
step). Whether the case's stage allows it is the rules' (stream/rules/cases.py)."""

from __future__ import annotations

from typing import Any

from stream.contract.bounds import Bounds
from stream.contract.checks import Invalid, _id, _instant, _optional_id, _required
from stream.contract.records import (
    ACTION_TYPES,
    NO_WORKER_CODES,
    OUTCOME_CODES,
    RECOVERY_CODES,
    VALIDATION_STATUSES,
    Action,
)

# Free text a decision may carry: a reason for the record, not a document.
MAX_NOTE = 2000

# The fields each type requires, as ids (non-empty strings), beyond the common ones.
_REQUIRED_IDS = {
    "acknowledge": ("owner_id",),
    "assign_recovery": (),  # its code decides whether a worker is required
    "record_decision": ("action_type", "reviewer_id"),
    "complete_recovery": ("service_outcome", "member_condition"),
    "close": (),
}


def action_checked(obj: dict[str, Any], bounds: Bounds) -> Action:
    action_id = _id(obj, "action_id")
    escalation_id = _id(obj, "escalation_id")
    client_id = _id(obj, "client_id")
    kind = _required(obj, "type")
    if kind not in ACTION_TYPES:
        raise Invalid("invalid_value", f"type must be one of {ACTION_TYPES}")
    at = _instant(obj, "at", bounds)
    by = _id(obj, "by")
    fields: dict[str, Any] = {k: _id(obj, k) for k in _REQUIRED_IDS[kind]}
    if kind == "assign_recovery":
        code = _choice(obj, "recovery_action_code", RECOVERY_CODES)
        fields["recovery_action_code"] = code
        fields["assigned_worker_id"] = (_optional_id(obj, "assigned_worker_id")
                                        if code in NO_WORKER_CODES
                                        else _id(obj, "assigned_worker_id"))
        fields["recovery_deadline"] = _instant(obj, "recovery_deadline", bounds)
    elif kind == "close":
        fields["validation_status"] = _choice(obj, "validation_status", VALIDATION_STATUSES)
        fields["final_outcome_code"] = _choice(obj, "final_outcome_code", OUTCOME_CODES)
    note = obj.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
        raise Invalid("invalid_value", f"note must be a string of at most {MAX_NOTE} characters")
    return Action(action_id=action_id, escalation_id=escalation_id, client_id=client_id,
                  type=kind, at=at, by=by, note=note, raw=obj, **fields)


def _choice(obj: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    v = _required(obj, name)
    if v not in allowed:
        raise Invalid("invalid_value", f"{name} must be one of {allowed}")
    return str(v)
