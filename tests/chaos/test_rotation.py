"""Three workers of mixed stores (two RocksDB, one in memory) through a compressed simulated
morning with every kind of failure the simulator injects, while the kill -9 rotation
(tests/chaos/rotation.py) SIGKILLs one of them every 10 to 30 wall seconds and restarts it.
Graded by the scorer against the ledger: for every kind nothing missing, nothing spurious,
no ``open`` twice, and every dead letter the ledger says was sent, once.

The short variant, for ``make test``; ``python -m benchmarks.rotation`` runs a longer
morning several times and measures the fail-over delay."""

from __future__ import annotations

import pytest

from simulator.run import simulate
from simulator.scenario import SimConfig
from simulator.score import format_report
from stream.settings import Settings
from tests.chaos import worker_logs
from tests.chaos.rotation import EVERYTHING, MIXED_STORES, Rotation

pytestmark = pytest.mark.integration

SEED = 21


def findings(report: dict, rotation: Rotation, min_kills: int) -> list[str]:
    """What is wrong with a run under the rotation, one line each; nothing if all is well."""
    out = []
    if len(rotation.kills) < min_kills:
        out.append(f"only {len(rotation.kills)} kills, fewer than {min_kills}")
    if rotation.crashes:
        out.append(f"workers died by themselves: {rotation.crashes}")
    if not rotation.all_ready_at_end:
        out.append("not every worker ready at the end of the day")
    for kind, k in report["kinds"].items():
        if (k["missing"], k["spurious"], k["duplicates"]) != (0, 0, 0):
            out.append(f"{kind}: {k['missing']} missing {k['missing_ids']}, "
                       f"{k['spurious']} spurious {k['spurious_ids']}, "
                       f"{k['duplicates']} duplicate opens")
    for reason, d in report["deadletters"].items():
        if d["expected"] != d["got"]:
            out.append(f"dead letters {reason}: expected {d['expected']}, got {d['got']}")
    return out


def test_kill_9_rotation_through_a_morning_loses_and_doubles_nothing(broker, tmp_path):
    tag = "rotation"
    settings = Settings(broker=broker, app_id=f"ecm-{tag}", partitions=6,
                        topic_roster=f"{tag}.roster", topic_events=f"{tag}.events",
                        topic_escalations=f"{tag}.escalations",
                        topic_visits=f"{tag}.visits",
                        topic_deadletter=f"{tag}.deadletter", topic_work=f"{tag}.work",
                        topic_state=f"{tag}.state", topic_actions=f"{tag}.actions",
                        unscheduled_grace_s=120.0)
    # No duty desk: it acts on a schedule that assumes each escalation was raised within its
    # guard band, which a fault can delay past the desk's first action (unknown_escalation).
    config = SimConfig(seed=SEED, clients=1200, workers=150, start_hour=7.0, hours=1.5,
                       speed=40.0, batch_size=50, rates=EVERYTHING, desk=False)
    rotation = Rotation(seed=SEED)
    report = simulate(config, settings, ledger_path=tmp_path / "ledger.json",
                      worker_procs=len(MIXED_STORES), workdir=tmp_path,
                      worker_changes=MIXED_STORES, fault=rotation)
    wrong = findings(report, rotation, min_kills=3)
    logs = sorted(tmp_path.glob("worker-*.log"))
    errs = worker_logs.following(worker_logs.errors(logs),
                                 [k.killed_at for k in rotation.kills])
    assert not wrong, "\n".join([
        *wrong, "", format_report(report), "", rotation.describe(), "",
        "worker-log errors (after kill #, seconds after it):",
        *(f"  {e['worker']} after #{e['after_kill']} +{e['seconds_after_kill']} s "
          f"x{e['count']}: {e['text']}" for e in errs[:40]),
        "", worker_logs.tails(logs)])
