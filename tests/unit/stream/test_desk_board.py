"""The duty desk's board: its model (the latest snapshot wins, the desk's order, the next
deadline, evidence in words, filters, pages) and who may sign in."""

from __future__ import annotations

import pytest

from stream.desk.auth import Users
from stream.desk.board import Board, Filters, evidence_words, next_deadline
from stream.errors import SettingsError
from stream.settings import Settings
from tests.factories import T0, event, north_of_home, visit
from tests.unit.stream.harness import Harness
from tests.unit.stream.rules import test_cases as tc


def _board(h: Harness) -> Board:
    b = Board()
    for r in h.escalations:
        b.apply(r)
    return b


def test_the_latest_revision_wins_in_any_order():
    h = tc._missed()
    tc.act(h, tc.ack(tc.MISSED_AT + 60))
    b = Board()
    for r in reversed(h.escalations):
        b.apply(r)
    assert b.cases[tc.EID]["status"] == "acknowledged"


def test_p1_first_then_the_least_time_left():
    h = Harness(cases=True)
    h.roster(visit("a", client_id="a"),  # P2 missed, P3 late
             visit("b", client_id="b", risk_level="critical", time_critical=True,
                   lives_alone=True))  # P1 missed
    h.at(T0 + 1800)
    rows, total = _board(h).open_rows(Filters(), T0 + 1800)
    assert total == 4
    # b's late and missed are both P1 (critical, time-critical, alone): first, 5 min left.
    assert {r["id"] for r in rows[:2]} == {"b:late", "b:missed"}
    assert rows[0]["next_stage"] == "owner" and rows[0]["left_s"] == 300
    p2 = [r for r in rows if r["priority"] == "P2"]
    assert p2 and all(r["left_s"] == 600 for r in p2)


def test_the_next_deadline_follows_the_case():
    h = tc._missed()
    assert next_deadline(tc.last(h))[0] == "owner"
    tc.act(h, tc.ack(tc.MISSED_AT + 60))
    assert next_deadline(tc.last(h))[0] == "pathway"
    tc.act(h, tc.assign(tc.MISSED_AT + 120, deadline=tc.MISSED_AT + 3600))
    assert next_deadline(tc.last(h)) == ("recovery", tc.MISSED_AT + 3600)
    tc.act(h, tc.decide(tc.MISSED_AT + 130))
    h.events(event(at=tc.MISSED_AT + 600, worker_id="w5"))
    assert next_deadline(tc.last(h)) is None


def test_filters_and_pages():
    h = Harness(cases=True)
    h.roster(*[visit(f"v{i}", client_id=f"c{i}") for i in range(5)])
    h.at(T0 + 1800)
    b = _board(h)
    assert b.open_rows(Filters(kind="missed"), T0)[1] == 5
    assert b.open_rows(Filters(priority="P3"), T0)[1] == 5  # the late ones
    rows, total = b.open_rows(Filters(page=1), T0, size=4)
    assert total == 10 and len(rows) == 4
    assert b.open_rows(Filters(stage="acknowledged"), T0)[1] == 0


def test_evidence_in_words():
    h = Harness(cases=True)
    h.roster(visit())
    lat, lon = north_of_home(2100)
    h.events(event(at=T0 + 60, lat=lat, lon=lon, accuracy_m=12.0))
    words = evidence_words(h.by_id("v1:location_mismatch"))
    assert words.startswith("fix 1.9 km from the fence") or words.startswith("fix 2.")
    assert "(±12.0 m)" in words
    late = Harness(cases=True)
    late.roster(visit())
    late.at(T0 + 1080)
    assert evidence_words(late.by_id("v1:late")) == "18 min after the start, no check-in from w1"


def test_a_refusal_shows_on_its_row():
    h = tc._missed()
    b = _board(h)
    b.refused(tc.close(tc.MISSED_AT + 60), "not_allowed", "a close needs a completed recovery",
              "2026-11-18T12:00:00.000Z")
    row = next(r for r in b.open_rows(Filters(), T0)[0] if r["id"] == tc.EID)
    assert row["refusal"][:2] == ("close", "not_allowed")


def test_tokens_from_settings_and_sign_in(tmp_path):
    f = tmp_path / "tokens"
    f.write_text("# the desk\nann:secret-ann-1\n")
    users = Users.from_settings(Settings(desk_tokens="bob:secret-bob-2",
                                         desk_tokens_file=str(f)))
    assert users.sign_in("ann", "wrong-token") is None
    session = users.sign_in("ann", "secret-ann-1")
    assert users.user(session) == "ann"
    assert users.user("forged") is None
    users.sign_out(session)
    assert users.user(session) is None
    with pytest.raises(SettingsError):
        Users.from_settings(Settings(desk_tokens="carol:short"))


def test_the_kept_order_is_the_order_sorted_afresh_as_cases_change():
    """Revisions that move a case (acknowledged, breached, resolved, a new priority) keep
    the board's index equal to sorting every open case again, and its counts true."""
    import random

    from stream.contract.records import FINAL_STATUSES
    from stream.desk import board as board_mod

    rng = random.Random(5)
    b = Board()
    latest: dict[str, dict] = {}
    for n in range(600):
        eid = f"v{rng.randrange(80)}:missed"
        rev = latest.get(eid, {}).get("revision", 0) + rng.choice((1, 1, 2))
        due = rng.randrange(3600)
        r = {"escalation_id": eid, "revision": rev, "kind": "missed",
             "priority": rng.choice(("P1", "P2", "P3", "P4")),
             "status": rng.choice(("open", "acknowledged", "resolved", "closed")),
             "detected_at": f"2026-11-18T10:{n % 60:02d}:00.000Z",
             "resolved_at": "2026-11-18T12:00:00.000Z",
             "case": {"owner_due": f"2026-11-18T11:{due % 60:02d}:00.000Z",
                      "pathway_due": "2026-11-18T11:59:00.000Z",
                      "closure": {"received": f"2026-11-18T12:{n % 60:02d}:00.000Z"}}}
        if b.apply(r):
            latest[eid] = r
        if rng.random() < 0.1:  # an older revision arriving late changes nothing
            assert not b.apply({**r, "revision": rev - 1, "status": "open"})
    afresh = sorted((r for r in latest.values() if r["status"] not in FINAL_STATUSES),
                    key=board_mod._order)
    rows, total = b.open_rows(Filters(), T0, size=1000)
    assert [row["id"] for row in rows] == [r["escalation_id"] for r in afresh]
    assert total == len(afresh) > 10
    assert b.counts() == {p: sum(r["priority"] == p for r in afresh)
                          for p in ("P1", "P2", "P3", "P4")}
    closed = [r for r in latest.values() if r["status"] in FINAL_STATUSES]
    assert len(b.closed_today(T0, size=1000)) == len(closed) > 10


def test_the_eta_and_its_cause_in_words():
    r = {"kind": "at_risk", "evidence": {"predicted_lateness_s": 1500.0,
                                         "expected_arrival": "2026-11-18T11:31:40.000Z",
                                         "cause": "carried_from_previous_visit"}}
    assert evidence_words(r) == ("predicted 25 min after the start; expected 11:31 "
                                 "(carried from previous visit)")
    late = {"kind": "late", "evidence": {"minutes_after_start": 16,
                                         "expected_arrival": "2026-11-18T11:31:40.000Z"}}
    assert evidence_words(late) == "16 min after the start, no check-in; expected 11:31"
    late["evidence"] = {"minutes_after_start": 16, "cause": "late_roster_change"}
    assert evidence_words(late) == ("16 min after the start, no check-in; "
                                    "cause: late roster change")
    late["evidence"]["cause"] = "unknown"  # says nothing the row does not
    assert evidence_words(late) == "16 min after the start, no check-in"


def test_cases_ended_before_yesterday_are_let_go():
    b = Board()
    for n, (status, ended) in enumerate((("resolved", "2026-11-16T10:00:00.000Z"),
                                         ("resolved", "2026-11-17T10:00:00.000Z"),
                                         ("closed", "2026-11-18T09:00:00.000Z"),
                                         ("open", None))):
        b.apply({"escalation_id": f"v{n}:missed", "revision": 1, "status": status,
                 "priority": "P2", "resolved_at": ended,
                 "case": {"closure": {"received": ended}}})
    assert b.prune(T0) == 1  # T0 is 2026-11-18: the 16th goes, yesterday's stays
    assert set(b.cases) == {"v1:missed", "v2:missed", "v3:missed"}
    assert b.closed_count(T0) == 1 and b.counts()["P2"] == 1
