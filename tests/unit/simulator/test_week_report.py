"""A compressed week of a small region through the worker's stages in process, then
``ecm report`` on its visit records: every total equals the ledger's, and the week's
safeguarding reviews are exactly the ledger's (simulator/records.py, report_totals)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec
import orjson

from simulator.ledger import build_ledger
from simulator.records import expect_records, report_totals
from simulator.scenario import Rates, SimConfig, build_scenario
from simulator.score import score
from stream.cli import main
from tests.unit.simulator.test_records_truth import _play


def test_a_week_reported_gives_the_ledgers_totals(tmp_path, capsys):
    config = SimConfig(seed=11, clients=600, workers=80, start_hour=6.0, hours=18 + 6 * 24,
                       days=7, desk=False,
                       # Every event names its visit: an event that names none, at one of
                       # two visits of a person half an hour apart, may match the other
                       # (matching's own ambiguity, not this test's subject).
                       rates=Rates(missed=0.04, delay=0.05, no_visit_id=0.0))
    sc = build_scenario(config)
    ledger = build_ledger(sc)  # the default thresholds: 2 missed or 3 late in 7 days
    ledger.records = expect_records(sc, ledger)
    w = _play(sc, (2, 3))
    escalations = [orjson.loads(msgspec.json.encode(e)) for e in w.escalations]
    reviews = score(ledger, escalations, [])["kinds"]["safeguarding_review"]
    assert reviews["expected"] >= 5 and (reviews["precision"], reviews["recall"]) == (1.0, 1.0)
    visits, escs = tmp_path / "visits.jsonl", tmp_path / "escalations.jsonl"
    visits.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in w.visits))
    escs.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in escalations))
    # The week's days but its last, whose visits the run may end before settling.
    first = datetime.fromtimestamp(config.day_start, UTC).date().isoformat()
    last = datetime.fromtimestamp(config.day_start + 5 * 86400, UTC).date().isoformat()
    capsys.readouterr()
    assert main(["report", "--from", first, "--to", last, "--input", str(visits),
                 "--escalations", str(escs), "--out", str(tmp_path / "report"),
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    want = report_totals(ledger, first, last)
    assert want["visits"] > 10_000 and want["missed"] > 100
    for name, n in want.items():
        assert got[name] == n, (name, got[name], n)
