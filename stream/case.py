"""``ecm case``: a duty desk's decisions written to ``ecm.actions`` from a terminal, for a
desk without a case system. Each subcommand is one action type (docs/contract.md):

    ecm case ack      ESCALATION_ID --client C --owner O
    ecm case assign   ESCALATION_ID --client C --code CODE [--worker W] --deadline WHEN
    ecm case decide   ESCALATION_ID --client C --action-type T --reviewer R
    ecm case complete ESCALATION_ID --client C --outcome O --condition C
    ecm case close    ESCALATION_ID --client C --validation STATUS --outcome CODE

``WHEN`` is RFC 3339, or ``+N`` minutes from now. The action is checked here as the worker
checks its fields, so a missing field is said at once; whether the case's stage allows it
is the worker's to judge, and a refusal goes to ``ecm.deadletter`` with its reason.
"""

from __future__ import annotations

import argparse
import getpass
import time
import uuid
from typing import Any

import orjson

from stream.contract.actions import action_checked
from stream.contract.bounds import Bounds
from stream.contract.checks import Invalid
from stream.contract.records import OUTCOME_CODES, RECOVERY_CODES, VALIDATION_STATUSES
from stream.security import connection
from stream.settings import Settings
from stream.timeutil import format_instant

_TYPES = {"ack": "acknowledge", "assign": "assign_recovery", "decide": "record_decision",
          "complete": "complete_recovery", "close": "close"}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("case", help="write a duty desk's decision on a case to ecm.actions")
    steps = p.add_subparsers(dest="step", required=True)
    for name, help_ in (("ack", "take ownership of the case"),
                        ("assign", "assign a recovery pathway"),
                        ("decide", "record a decision, with its reviewer"),
                        ("complete", "record the recovery as completed"),
                        ("close", "close the case on its evidence")):
        s = steps.add_parser(name, help=help_)
        s.add_argument("escalation_id")
        s.add_argument("--client", required=True, help="the escalation's client_id")
        s.add_argument("--by", default=None, help="your user id (default: the login name)")
        s.add_argument("--note")
        s.add_argument("--at", help="when it was decided, RFC 3339 (default: now)")
        s.add_argument("--action-id", help="default: a new id; reuse one to retry safely")
        s.add_argument("--broker")
        if name == "ack":
            s.add_argument("--owner", required=True, help="the named escalation owner")
        elif name == "assign":
            s.add_argument("--code", required=True, choices=RECOVERY_CODES)
            s.add_argument("--worker", help="the assigned worker (not needed for "
                           "family_or_neighbour, welfare_call, client_declined)")
            s.add_argument("--deadline", required=True, help="RFC 3339, or +N minutes")
        elif name == "decide":
            s.add_argument("--action-type", required=True)
            s.add_argument("--reviewer", required=True)
        elif name == "complete":
            s.add_argument("--outcome", required=True, help="the service outcome")
            s.add_argument("--condition", required=True, help="the person's condition")
        else:
            s.add_argument("--validation", default="validated", choices=VALIDATION_STATUSES)
            s.add_argument("--outcome", required=True, choices=OUTCOME_CODES)


def build(args: argparse.Namespace, now: float) -> dict[str, Any]:
    """The action document the arguments describe."""
    doc: dict[str, Any] = {
        "action_id": args.action_id or f"a-{uuid.uuid4()}",
        "escalation_id": args.escalation_id, "client_id": args.client,
        "type": _TYPES[args.step], "at": args.at or format_instant(now),
        "by": args.by or getpass.getuser()}
    if args.note:
        doc["note"] = args.note
    step = args.step
    if step == "ack":
        doc["owner_id"] = args.owner
    elif step == "assign":
        doc["recovery_action_code"] = args.code
        if args.worker:
            doc["assigned_worker_id"] = args.worker
        deadline = args.deadline
        if deadline.startswith("+"):
            deadline = format_instant(now + 60.0 * float(deadline[1:]))
        doc["recovery_deadline"] = deadline
    elif step == "decide":
        doc["action_type"] = args.action_type
        doc["reviewer_id"] = args.reviewer
    elif step == "complete":
        doc["service_outcome"] = args.outcome
        doc["member_condition"] = args.condition
    else:
        doc["validation_status"] = args.validation
        doc["final_outcome_code"] = args.outcome
    return doc


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        doc = build(args, time.time())
        action_checked(doc, Bounds.from_settings(settings))
    except (Invalid, ValueError) as exc:
        print(f"not sent: {exc}")
        return 2
    send(settings, doc)
    print(f"sent {doc['type']} {doc['action_id']} for {doc['escalation_id']}; a refusal "
          f"would be on {settings.topic_deadletter}")
    return 0


def send(settings: Settings, doc: dict[str, Any]) -> None:
    """One action to ``ecm.actions``, keyed by its client, acknowledged by the broker."""
    from kafka import KafkaProducer

    from stream.topics import partition_for

    producer = KafkaProducer(**connection(settings), acks="all")
    try:
        producer.send(settings.topic_actions, orjson.dumps(doc),
                      key=doc["client_id"].encode(),
                      partition=partition_for(doc["client_id"], settings.partitions)
                      ).get(timeout=30)
    finally:
        producer.close()
