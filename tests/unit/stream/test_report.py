"""`ecm report --input`: the visit records of ten days, corrections and visits outside the
range among them, into the page and the CSVs; every figure checked against a count made
here from the records themselves."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import re
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest

from stream.cli import main
from tests.report_records import at, review, validators, visit_record, write_lines

FIRST, LAST = date(2026, 11, 23), date(2026, 12, 2)  # Monday to the next Wednesday
ANN, BOB, CAT = "client-ann-smith", "client-bob-jones", "client-cat-brown"
DAVE, EVE, FAY = "worker-dave-x", "worker-eve-y", "worker-fay-z"
KEY = "a-key-for-the-tests"


def visit_docs() -> list[dict]:
    """In the order of the topic: a visit's later record is its correction."""
    return [
        visit_record("visit-0001", client_id=ANN, start=at(0, 9)),
        visit_record("visit-0002", client_id=ANN, start=at(0, 13), timeliness="late",
                     cause="travel", disruption="yes", evidence=("travel",),
                     suggested="service_failure", case_closed_after_s=1800),
        visit_record("visit-0003", client_id=BOB, start=at(1, 8), timeliness="missed",
                     rostered=(EVE,), cause="unknown", case_closed_after_s=5400),
        # Missed, its case open; then corrected: the case closed as declined.
        visit_record("visit-0004", client_id=BOB, start=at(1, 18), timeliness="missed",
                     rostered=(EVE,), cause="unknown"),
        visit_record("visit-0005", client_id=CAT, start=at(2, 10), timeliness="cancelled",
                     rostered=(EVE,), disruption="unknown"),
        visit_record("visit-0006", client_id=CAT, start=at(2, 12), timeliness="late",
                     rostered=(EVE,), came=(FAY,), cause="late_roster_change",
                     disruption="yes", evidence=("late_roster_change", "reassigned"),
                     suggested="service_failure"),
        visit_record("visit-0004", client_id=BOB, start=at(1, 18), timeliness="missed",
                     rostered=(EVE,), cause="unknown", suggested="person_declined",
                     case_closed_after_s=600, case_outcome="client_declined"),
        visit_record("visit-0007", client_id=ANN, start=at(3, 9),
                     outcome="attended_no_check_out", extended=True),
        # Attended 40 minutes late: past its missed threshold, so a missed visit (5.1).
        visit_record("visit-0008", client_id=BOB, start=at(4, 7), timeliness="missed",
                     outcome="attended", cause="carried_from_previous_visit",
                     case_closed_after_s=3 * 3600),
        visit_record("visit-0009", client_id=CAT, start=at(5, 9), timeliness="late",
                     rostered=(FAY,), cause="unknown", suggested="access_barrier_possible",
                     with_case=False),
        # Cancelled after its missed deadline had fallen: still planned, still missed.
        visit_record("visit-0010", client_id=ANN, start=at(6, 23.5), timeliness="missed",
                     outcome="cancelled", cause="not_started", case_closed_after_s=900),
        visit_record("visit-0011", client_id=ANN, start=at(8, 9), timeliness="late",
                     rostered=(FAY,), cause="travel", case_closed_after_s=2400),
        visit_record("visit-0012", client_id=CAT, start=at(9, 20), rostered=(FAY,)),
        # 23:30 UTC on the last day, written with an offset: in the range.
        visit_record("visit-0013", client_id=CAT, start="2026-12-03T00:30:00+01:00",
                     timeliness="missed", rostered=(FAY,), cause="unknown"),
        # Outside the range: the day before, the day after, 22:30 UTC the day before.
        visit_record("visit-0014", client_id=ANN, start=at(-1, 23.99), timeliness="missed"),
        visit_record("visit-0015", client_id=ANN, start=at(10, 0), timeliness="late"),
        visit_record("visit-0016", client_id=BOB, start="2026-11-23T00:30:00+02:00",
                     timeliness="missed", rostered=(EVE,)),
        # In the range, then moved out of it: the move wins.
        visit_record("visit-0017", client_id=BOB, start=at(2, 9), timeliness="late"),
        visit_record("visit-0017", client_id=BOB, start=at(12, 9)),
    ]


def escalation_docs() -> list[dict]:
    later = review(BOB, ["visit-0003", "visit-0004"], detected=at(1, 19), revision=2,
                   missed=2, priority="P1")
    return [
        later,
        # An earlier revision read after the later one: the highest revision wins.
        review(BOB, ["visit-0003"], detected=at(1, 19), revision=1, missed=1),
        review(ANN, ["visit-0002", "visit-0010", "visit-0011"], detected=at(8, 10),
               late=2, missed=1),
        review(CAT, ["visit-0013"], detected=at(11, 9), missed=1),  # after the range
        {**later, "escalation_id": "visit-0003:missed", "kind": "missed", "revision": 3},
    ]


def test_the_records_are_valid_against_the_contract():
    visit, escalation = validators()
    for doc in visit_docs():
        visit.validate(doc)
    for doc in escalation_docs():
        escalation.validate(doc)


def standing() -> list[dict]:
    """The last record of each visit scheduled in the range (UTC days)."""
    last = {d["visit_id"]: d for d in visit_docs()}
    return [d for d in last.values() if FIRST <= _day(d) <= LAST]


def _day(doc: dict) -> date:
    return datetime.fromisoformat(doc["scheduled_start"]).astimezone(UTC).date()


@pytest.fixture
def inputs(tmp_path: Path) -> list[str]:
    visits = write_lines(tmp_path / "visits.jsonl",
                         [*visit_docs(), b"not json", {"visit_id": 7, "schema_version": 1}])
    escalations = write_lines(tmp_path / "escalations.jsonl", escalation_docs())
    return ["report", "--from", str(FIRST), "--to", str(LAST), "--input", str(visits),
            "--escalations", str(escalations)]


def _run(argv: list[str], capsys) -> tuple[int, list[str]]:
    code = main(argv)
    return code, capsys.readouterr().out.splitlines()


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_totals_and_tables_match_the_records(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    code, lines = _run([*inputs, "--out", str(out), "--json"], capsys)
    assert code == 0
    written = [line.removeprefix("wrote ") for line in lines if line.startswith("wrote ")]
    assert sorted(Path(p).name for p in written) == sorted(
        ["report.html", "report.duckdb", "totals.csv", "per_day.csv", "per_week.csv",
         "by_reason.csv", "by_worker.csv", "by_client.csv", "recovery.csv",
         "safeguarding.csv"])
    assert all(Path(p).stat().st_size > 0 for p in written)
    assert "skipped 2 of 26 records" in "\n".join(lines)
    totals = json.loads(lines[-1])

    docs = standing()
    t = Counter(d["timeliness"] for d in docs)
    planned = len(docs) - t["cancelled"]
    expected = {
        "visits": len(docs), "planned": planned, "late": t["late"], "missed": t["missed"],
        "on_time": t["on_time"], "cancelled": t["cancelled"],
        "attended": sum(d["outcome"].startswith("attended") for d in docs),
        "cancelled_after_deadline": sum(d["outcome"] == "cancelled" != d["timeliness"]
                                        for d in docs),
        "missed_proportion": round(t["missed"] / planned, 4),
        "extended": sum(d["extended"] for d in docs),
        "with_substitute": sum(any(w["role"] == "substitute" for w in d["workers"])
                               for d in docs),
        "safeguarding_reviews": 2}
    for value in ("yes", "no", "unknown"):
        expected[f"disruption_{value}"] = sum(
            d["classification"]["service_side_disruption"] == value for d in docs)
    for value in ("service_failure", "access_barrier_possible", "person_declined",
                  "needs_review"):
        expected[f"suggested_{value}"] = sum(
            d["classification"]["suggested_classification"] == value for d in docs)
    assert {k: totals[k] for k in expected} == expected
    # The figures the records were written to give, so the counts above are not vacuous.
    assert (totals["planned"], totals["late"], totals["missed"], totals["cancelled"]) == (
        12, 4, 5, 1)
    assert all(expected[f"suggested_{v}"] > 0 for v in (
        "service_failure", "access_barrier_possible", "person_declined", "needs_review"))
    assert {r["measure"]: r["value"] for r in _csv(out / "totals.csv")} == {
        k: str(v) for k, v in totals.items()}

    per_day = _csv(out / "per_day.csv")
    assert [r["day"] for r in per_day] == [str(date.fromordinal(FIRST.toordinal() + i))
                                           for i in range(10)]
    for row in per_day:
        on_day = [d for d in docs if str(_day(d)) == row["day"]]
        assert (int(row["late"]), int(row["missed"]), int(row["planned"])) == (
            sum(d["timeliness"] == "late" for d in on_day),
            sum(d["timeliness"] == "missed" for d in on_day),
            sum(d["timeliness"] != "cancelled" for d in on_day)), row
    assert [(r["week"], r["late"], r["missed"]) for r in _csv(out / "per_week.csv")] == [
        ("2026-11-23", "3", "4"), ("2026-11-30", "1", "1")]

    failed = [d for d in docs if d["timeliness"] in ("late", "missed")]
    by_worker = Counter(d["rostered_worker_ids"][0] for d in failed)
    assert [(r["rostered_worker"], int(r["late_and_missed"]))
            for r in _csv(out / "by_worker.csv")] == sorted(
        by_worker.items(), key=lambda kv: (-kv[1], -sum(
            d["timeliness"] == "missed" for d in failed if d["rostered_worker_ids"][0] == kv[0]),
            kv[0]))
    by_reason = {r["reason"]: (int(r["late"]), int(r["missed"]))
                 for r in _csv(out / "by_reason.csv")}
    assert by_reason == {c: (sum(d["cause"] == c and d["timeliness"] == "late" for d in failed),
                             sum(d["cause"] == c and d["timeliness"] == "missed" for d in failed))
                         for c in {d["cause"] for d in failed}}
    clients = {r["client_id"]: r for r in _csv(out / "by_client.csv")}
    assert {c: int(r["late_and_missed"]) for c, r in clients.items()} == Counter(
        d["client_id"] for d in failed)
    assert (clients[BOB]["safeguarding_reviews"], clients[ANN]["safeguarding_reviews"],
            clients[CAT]["safeguarding_reviews"]) == ("1", "1", "0")

    recovery_s = [
        (datetime.fromisoformat(e["closed_at"]) - datetime.fromisoformat(e["detected_at"])
         ).total_seconds() for d in failed for e in d["escalations"] if "closed_at" in e]
    everything = _csv(out / "recovery.csv")[-1]
    assert everything["failed"] == "late and missed"
    assert (int(everything["visits"]), int(everything["cases_closed"]),
            int(everything["without_case"])) == (len(failed), len(recovery_s), 1)
    assert float(everything["p50_min"]) == round(np.percentile(recovery_s, 50) / 60, 1)
    assert float(everything["p90_min"]) == round(np.percentile(recovery_s, 90) / 60, 1)

    reviews = _csv(out / "safeguarding.csv")
    assert [(r["client_id"], r["visits"], r["priority"], r["missed"]) for r in reviews] == [
        (BOB, "visit-0003 visit-0004", "P1", "2"),
        (ANN, "visit-0002 visit-0010 visit-0011", "P2", "1")]


def test_the_page_is_self_contained_and_says_who_decides(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run([*inputs, "--out", str(out)], capsys)[0] == 0
    page = (out / "report.html").read_text()
    assert not re.search(r"https?://", page)
    links = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page)
    assert links and all(link.startswith("#") for link in links)  # in-page only
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert page.count("<svg") == 4
    assert "people decide" in page
    assert 'id="total-planned"><b>12</b>' in page
    for quoted in ("(5.6", "(5.7)", "(5.9)", "(5.11)"):
        assert quoted in page


def _pseudonym(prefix: str, identifier: str) -> str:
    return prefix + hmac.new(KEY.encode(), identifier.encode(), hashlib.sha256).hexdigest()[:12]


def test_pseudonymised_nowhere_names_anybody(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ECM_REPORT_KEY", KEY)
    out = tmp_path / "out"
    assert _run([*inputs, "--out", str(out), "--pseudonymise"], capsys)[0] == 0
    originals = {ANN, BOB, CAT, DAVE, EVE, FAY} | {d["visit_id"] for d in visit_docs()} | {
        e["escalation_id"] for e in escalation_docs()}
    files = sorted(out.iterdir())
    assert len(files) == 10
    for path in files:
        data = path.read_bytes()
        named = sorted(o for o in originals if o.encode() in data)
        assert not named, (path.name, named)

    # The same person, the same pseudonym, in every table and on the page.
    clients = {r["client_id"] for r in _csv(out / "by_client.csv")}
    assert clients == {_pseudonym("c-", c) for c in (ANN, BOB, CAT)}
    reviews = _csv(out / "safeguarding.csv")
    assert reviews[0]["client_id"] == _pseudonym("c-", BOB)
    assert reviews[0]["visits"] == " ".join(_pseudonym("v-", v)
                                            for v in ("visit-0003", "visit-0004"))
    assert reviews[0]["review_id"].startswith("e-")
    workers = {r["rostered_worker"] for r in _csv(out / "by_worker.csv")}
    assert workers == {_pseudonym("w-", w) for w in (DAVE, EVE, FAY)}
    page = (out / "report.html").read_text()
    assert all(p in page for p in clients | workers)


def test_without_a_key_each_report_has_its_own_pseudonyms(inputs, tmp_path, capsys,
                                                          monkeypatch):
    monkeypatch.delenv("ECM_REPORT_KEY", raising=False)
    seen = []
    for run in ("one", "two"):
        code, lines = _run([*inputs, "--out", str(tmp_path / run), "--pseudonymise"], capsys)
        assert code == 0 and any("for this report only" in line for line in lines)
        seen.append({r["client_id"] for r in _csv(tmp_path / run / "by_client.csv")})
    assert seen[0].isdisjoint(seen[1])
    assert all(re.fullmatch(r"c-[0-9a-f]{12}", c) for c in seen[0])


def test_the_database_is_left_for_planners(inputs, tmp_path, capsys):
    import duckdb

    out = tmp_path / "out"
    assert _run([*inputs, "--out", str(out)], capsys)[0] == 0
    con = duckdb.connect(str(out / "report.duckdb"), read_only=True)
    rows = dict(con.execute("SELECT visit_id, suggested_classification FROM visits").fetchall())
    con.close()
    assert set(rows) == {d["visit_id"] for d in standing()}
    assert rows["visit-0004"] == "person_declined"  # the correction


@pytest.mark.parametrize("argv, says", [
    (["--from", "2026-11-23", "--to", "2026-11-22"], "--to is before --from"),
    (["--from", "2026-11-23", "--to", "2026-11-23", "--escalations", "e.jsonl"],
     "--escalations goes with --input"),
    (["--from", "2026-11-23", "--to", "2026-11-23", "--input", "/nonexistent/v.jsonl"],
     "no report"),
])
def test_arguments_it_refuses(argv, says, tmp_path, capsys):
    code, lines = _run(["report", *argv, "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and says in lines[-1]
    assert not (tmp_path / "out").exists()
