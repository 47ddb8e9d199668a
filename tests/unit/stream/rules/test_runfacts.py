"""The wire between the two keyed views of worker runs (stream/rules/runfacts.py), and the
whole chain in process: visit partitions tell a run partition their facts, and its
predictions come back to raise ``at_risk`` in another partition before the deadline."""

from __future__ import annotations

import orjson

from stream.clock import ManualClock
from stream.contract import Codec, Source
from stream.rules.detector import PartitionDetector
from stream.rules.runfacts import (
    apply,
    destinations,
    event_fact,
    prediction_doc,
    visit_fact,
)
from stream.rules.runs import Runs, Travel
from stream.settings import Settings
from stream.topics import partition_for
from tests.factories import T0, event, north_of_home, visit

PARTS = 2


def _client_in(partition: int, n: int = 0) -> str:
    found = [c for c in (f"c{k}" for k in range(100)) if partition_for(c, PARTS) == partition]
    return found[n]


def _worker_in(partition: int) -> str:
    return next(w for w in (f"w{k}" for k in range(100)) if partition_for(w, PARTS) == partition)


def test_a_reassignment_goes_to_the_run_partitions_of_the_workers_before_and_after():
    w0, w1 = _worker_in(0), _worker_in(1)
    fact = visit_fact("v", 0, T0, T0 + 1800, 51.5, -0.1, T0 + 900, [w1], [w0], False)
    assert destinations(fact, PARTS) == {0, 1}
    assert destinations(event_fact(w1, "v", "check_in", T0, T0), PARTS) == {1}


def test_facts_survive_the_wire_and_apply_twice_as_once():
    w = _worker_in(0)
    facts = orjson.loads(orjson.dumps([
        visit_fact("a", 1, T0, T0 + 1800, 51.5, -0.1, T0 + 900, [w], [], False),
        event_fact(w, "a", "check_in", T0 + 60, T0 + 61)]))
    runs = Runs(Travel(5.0))
    assert apply(runs, facts, 0, PARTS) == ({w}, 0)
    assert apply(runs, facts, 0, PARTS) == ({w}, 0)
    assert runs.runs[w].stops["a"].check_in == T0 + 60
    # Another partition's worker is not held here; damaged facts are counted, not applied.
    other = _worker_in(1)
    assert apply(runs, [event_fact(other, "a", "check_in", T0, T0)], 0, PARTS) == (set(), 0)
    assert apply(runs, [["v", "short"], ["x"], "junk"], 0, PARTS) == (set(), 3)


def test_an_overrun_in_one_partition_raises_at_risk_in_another_before_its_deadline():
    settings = Settings(partitions=PARTS, runs=True)
    clock = ManualClock(T0 - 600)
    detectors = [PartitionDetector(p, settings, clock, Codec()) for p in range(PARTS)]
    worker = _worker_in(0)
    home_b = north_of_home(1000)
    a = visit("a", client_id=_client_in(0), workers=(worker,), start=T0, minutes=30)
    b = visit("b", client_id=_client_in(1), workers=(worker,), start=T0 + 2400, minutes=30,
              location={"lat": home_b[0], "lon": home_b[1]})
    facts = []
    for n, (p, doc) in enumerate(((0, a), (1, b))):
        out = detectors[p].process([("roster", doc, Source("ecm.roster", p, n))])
        facts += out.runs
    clock.set(T0 + 1500)  # the worker checks in 25 minutes late at a
    out = detectors[0].process([("event", event(at=T0 + 1500, visit_id="a",
                                                client_id=_client_in(0), worker_id=worker),
                                 Source("ecm.events", 0, 9))])
    facts += out.runs
    assert [f[0] for f in facts] == ["v", "v", "e"]
    runs = Runs(Travel(5.0))
    touched, bad = apply(runs, orjson.loads(orjson.dumps(facts)), 0, PARTS)
    assert touched == {worker} and bad == 0
    (p,) = runs.changed(worker, clock.now())
    assert p.visit_id == "b" and p.partition == 1 and p.late
    doc = orjson.loads(orjson.dumps(prediction_doc(p)))
    out = detectors[1].process([("prediction", doc, Source("ecm.work", 1, 0))])
    (r,) = out.escalations
    assert r.kind == "at_risk" and r.evidence["cause"] == "carried_from_previous_visit"
    assert r.evidence["lead_s"] > 0  # before b's late deadline


def test_the_runs_switch_reads_as_a_flag():
    import pytest

    from stream.errors import SettingsError

    assert Settings.from_env({"ECM_RUNS": "true"}).runs is True
    assert Settings.from_env({"ECM_RUNS": "False"}).runs is False
    assert Settings.from_env(Settings(runs=True).as_env()).runs is True
    with pytest.raises(SettingsError):
        Settings.from_env({"ECM_RUNS": "maybe"})
