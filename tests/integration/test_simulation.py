"""Two compressed hours of a small region through real workers, a duty desk acting on the
missed visits' cases, graded against the ledger."""

from __future__ import annotations

import pytest

from simulator.run import simulate
from simulator.scenario import Rates, SimConfig

pytestmark = pytest.mark.integration


def test_compressed_hours_are_caught_exactly(settings, tmp_path):
    config = SimConfig(seed=7, clients=1500, workers=190, start_hour=7.0, hours=2.0,
                       speed=60.0, batch_size=50,
                       rates=Rates(delay=0.05, missed=0.05, offline=0.03, duplicate=0.02,
                                   malformed_per_hour=12.0))
    report = simulate(config, settings, ledger_path=tmp_path / "ledger.json",
                      worker_procs=2, workdir=tmp_path)
    kinds = report["kinds"]
    for kind in ("late", "missed"):
        k = kinds[kind]
        assert k["expected"] >= 5, (kind, k)
        assert (k["precision"], k["recall"]) == (1.0, 1.0), (kind, k)
    assert report["duplicates"] == 0
    dead = report["deadletters"]
    for reason in ("invalid_json", "missing_field", "invalid_coordinates", "end_before_start"):
        assert dead[reason]["expected"] >= 3 and dead[reason]["got"] == dead[reason]["expected"]
    assert dead["duplicate_event"]["got"] == dead["duplicate_event"]["expected"]
    # The cases: every breach, verification and refusal the ledger derives, and nothing else.
    cases = report["cases"]
    for name, least in (("breaches", 50), ("verifications", 3), ("refusals", 5)):
        c = cases[name]
        assert c["expected"] >= least, (name, c)
        assert (c["precision"], c["recall"]) == (1.0, 1.0), (name, c)
    assert cases["breaches"]["duplicates"] == 0
    assert dead["not_allowed"]["got"] == dead["not_allowed"]["expected"] >= 5
    # The visit records: one per visit the window settled, each saying what the facts say.
    rec = report["records"]
    assert rec["graded"] >= 150 and rec["missing"] == 0 and rec["spurious"] == 0, rec
    for name, g in rec["fields"].items():
        assert g["accuracy"] == 1.0, (name, g)
    assert rec["classification"]["silent_said_no"] == 0
    assert rec["classification"]["accuracy"] == 1.0, rec["classification"]
    sg = report["kinds"].get("safeguarding_review")
    if sg is not None:  # a person's repeated failures in two hours: as the ledger says
        assert (sg["precision"], sg["recall"]) == (1.0, 1.0), sg
        assert report["safeguarding_visits"]["right"] == report["safeguarding_visits"]["graded"]
