"""`ecm case` builds the actions the worker checks, and `ecm watch` says what a case's
change was."""

from __future__ import annotations

import argparse

import pytest

from stream import case
from stream.contract.actions import action_checked
from stream.contract.bounds import Bounds
from stream.timeutil import format_instant
from stream.watch import describe
from tests.factories import T0
from tests.unit.stream.rules import test_cases as tc


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    case.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["case", *argv])


@pytest.mark.parametrize("argv", [
    ("ack", "v1:missed", "--client", "c1", "--owner", "m1"),
    ("assign", "v1:missed", "--client", "c1", "--code", "immediate_replacement",
     "--worker", "w5", "--deadline", "+45"),
    ("assign", "v1:missed", "--client", "c1", "--code", "welfare_call",
     "--deadline", "2026-11-18T12:00:00Z"),
    ("decide", "v1:missed", "--client", "c1", "--action-type", "call_family",
     "--reviewer", "r1"),
    ("complete", "v1:missed", "--client", "c1", "--outcome", "care_delivered",
     "--condition", "stable"),
    ("close", "v1:missed", "--client", "c1", "--outcome", "recovered"),
])
def test_each_step_builds_an_action_the_worker_accepts(argv):
    doc = case.build(_args(*argv, "--by", "u1"), T0)
    action = action_checked(doc, Bounds())
    assert (action.escalation_id, action.client_id, action.by) == ("v1:missed", "c1", "u1")
    assert action.at == T0
    if argv[0] == "assign" and argv[-1] == "+45":
        assert doc["recovery_deadline"] == format_instant(T0 + 45 * 60)


def test_an_assignment_that_needs_a_worker_is_not_sent_without_one(capsys):
    args = _args("assign", "v1:missed", "--client", "c1", "--code", "immediate_replacement",
                 "--deadline", "+30", "--broker", "127.0.0.1:1")
    assert case.run(args, case.Settings(broker="127.0.0.1:1")) == 2
    assert "assigned_worker_id is required" in capsys.readouterr().out


def test_watch_says_what_changed_in_a_case():
    h = tc._missed()
    tc.act(h, tc.ack(tc.MISSED_AT + 60, by="u7"))
    assert "acknowledge by u7" in describe(tc.last(h))
    assert "L1" in describe(tc.last(h))
    h.at(tc.MISSED_AT + 900)
    line = describe(tc.last(h))
    assert "BREACH pathway" in line and "L2" in line
    assert "RAISED" in describe(h.by_id(tc.EID))  # the opening reads as before
