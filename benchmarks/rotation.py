"""The kill -9 rotation through a long simulated morning: ``python -m benchmarks.rotation``.

Three workers of mixed stores (two RocksDB, one in memory) on their own embedded broker run
a compressed morning with every failure the simulator injects, while the rotation
(tests/chaos/rotation.py) SIGKILLs one of them every ``--every`` wall seconds (10 to 30) and
restarts it with the same settings after a short pause. ``--runs`` runs, one after another,
with seeds ``--seed``, ``--seed + 1``, ...; each is graded by the scorer against the ledger
(missing, spurious and duplicate ``open`` records per kind; dead letters expected and got
per reason, and the dead letters written twice for one input record, with the kill they
follow) and its fail-over delays measured as benchmarks/failover.py defines them: per
kill, from the kill to the last overdue escalation it caused being published, with the
ratios to ``2 * ECM_SESSION_TIMEOUT_S``. The worker-log errors are listed with the kill each
follows. The last line printed is one JSON object; ``--out`` writes it to a file.
"""

from __future__ import annotations

import argparse
import bisect
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks import failover
from benchmarks.pipeline import machine
from simulator.ledger import Ledger
from simulator.run import simulate
from simulator.scenario import SimConfig
from stream.broker import EmbeddedBroker, free_port
from stream.settings import Settings
from tests.chaos import worker_logs
from tests.chaos.rotation import EVERYTHING, MIXED_STORES, Rotation

RESULTS = Path(__file__).resolve().parent / "results"


def one_run(seed: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """A morning under the rotation on a broker of its own: its score, kills and delays."""
    workdir.mkdir(parents=True, exist_ok=True)
    # No duty desk: it acts on a schedule that assumes each escalation was raised within its
    # guard band, which a fault can delay past the desk's first action (unknown_escalation).
    config = SimConfig(seed=seed, clients=args.clients, workers=args.care_workers,
                       start_hour=args.start_hour, hours=args.hours, speed=args.speed,
                       batch_size=50, rates=EVERYTHING, desk=False)
    rotation = Rotation(seed, every_s=tuple(args.every), pause_s=args.pause)
    started = time.monotonic()
    with EmbeddedBroker(free_port()) as broker:
        settings = Settings(broker=broker.bootstrap, app_id=f"ecm-rotation-{seed}",
                            partitions=args.partitions, unscheduled_grace_s=120.0,
                            session_timeout_s=args.session_timeout)
        report = simulate(config, settings, ledger_path=workdir / "ledger.json",
                          worker_procs=len(MIXED_STORES), workdir=workdir,
                          worker_changes=MIXED_STORES, fault=rotation)
        published = failover.read_published(settings, settings.topic_escalations)
        dead = failover.read_published(settings, settings.topic_deadletter)
    ledger = Ledger.from_doc(orjson.loads((workdir / "ledger.json").read_bytes()))
    kills = [k.killed_at for k in rotation.kills]
    assert rotation.clock is not None
    delays = failover.measure(published, ledger, rotation.clock, kills,
                              settings.session_timeout_s)
    logs = sorted(workdir.glob("worker-*.log"))
    return {
        "seed": seed, "wall_s": round(time.monotonic() - started, 1), "workdir": str(workdir),
        "kills": rotation.summary(), "crashes": [vars(c) for c in rotation.crashes],
        "all_ready_at_end": rotation.all_ready_at_end,
        "score": {kind: {n: k[n] for n in ("expected", "missing", "spurious", "duplicates")}
                  for kind, k in report["kinds"].items()},
        "missing_ids": {kind: k["missing_ids"] for kind, k in report["kinds"].items()
                        if k["missing_ids"]},
        "spurious_ids": {kind: k["spurious_ids"] for kind, k in report["kinds"].items()
                         if k["spurious_ids"]},
        "deadletters": report["deadletters"],
        "deadletters_doubled": doubled(dead, kills),
        "clean": _clean(report),
        "failover": delays,
        "log_errors": worker_logs.following(worker_logs.errors(logs), kills),
    }


def doubled(dead: list[failover.Published], kills: list[float]) -> list[dict[str, Any]]:
    """Dead letters written more than once for the same input record (source topic,
    partition, offset and index): a rejection replayed after a crash. Each with the kill
    its second copy follows, by the copies' Kafka timestamps."""
    copies: dict[tuple[Any, ...], list[failover.Published]] = {}
    for d in dead:
        src = d.doc.get("source") or {}
        key = (src.get("topic"), src.get("partition"), src.get("offset"), src.get("index"))
        copies.setdefault(key, []).append(d)
    out = []
    for key, ds in copies.items():
        if len(ds) < 2:
            continue
        again = ds[1].timestamp
        k = bisect.bisect_right(kills, again) - 1 if again is not None else -1
        out.append({"reason": ds[0].doc.get("reason"), "stage": ds[0].doc.get("stage"),
                    "source": "{}:{}:{}:{}".format(*key), "copies": len(ds),
                    "after_kill": k if k >= 0 else None,
                    "seconds_after_kill": round(again - kills[k], 1)
                    if again is not None and k >= 0 else None})
    return out


def _clean(report: dict[str, Any]) -> bool:
    return (all((k["missing"], k["spurious"], k["duplicates"]) == (0, 0, 0)
                for k in report["kinds"].values())
            and all(d["expected"] == d["got"] for d in report["deadletters"].values()))


def _print_run(r: dict[str, Any]) -> None:
    fo = r["failover"]
    print(f"\n=== seed {r['seed']}: {len(r['kills'])} kills, {len(r['crashes'])} crashes, "
          f"{'clean' if r['clean'] else 'NOT CLEAN'}, {r['wall_s']:.0f} s; logs {r['workdir']}")
    print(f"{'kind':<20}{'expected':>9}{'missing':>8}{'spurious':>9}{'dup':>5}")
    for kind, k in r["score"].items():
        print(f"{kind:<20}{k['expected']:>9}{k['missing']:>8}{k['spurious']:>9}"
              f"{k['duplicates']:>5}")
    print(f"{'dead letters':<24}{'expected':>9}{'got':>6}")
    for reason, d in r["deadletters"].items():
        print(f"{reason:<24}{d['expected']:>9}{d['got']:>6}")
    bound = fo["bound_s"]
    f = fo["failover"]
    print(f"fail-over (session timeout {fo['session_timeout_s']:g} s, bound {bound:g} s): "
          f"p50 {f['p50']} s, p99 {f['p99']} s, max {f['max']} s; ratios "
          f"{f['ratio_p50']}/{f['ratio_p99']}/{f['ratio_max']}; {f['over_bound']} of "
          f"{f['n']} kills over the bound")
    a = fo["failover_not_overlapped"]
    print(f"  not overlapped by the next kill: n {a['n']}, p50 {a['p50']} s, p99 {a['p99']} s, "
          f"max {a['max']} s; ratios {a['ratio_p50']}/{a['ratio_p99']}/{a['ratio_max']}")
    for name in ("lateness_in_kill_windows", "lateness_outside"):
        s = fo[name]
        print(f"  {name}: n {s['n']}, p50 {s['p50']} s, p99 {s['p99']} s, max {s['max']} s")
    for k, d in zip(r["kills"], fo["kills"], strict=True):
        print(f"  kill {d['kill']} {k.get('killed_at_sim', '-')} {k['worker']} ({k['store']}): "
              f"fail-over {d['failover_s']} s ({d['ratio']}"
              f"{', overlapped' if d['overlapped'] else ''}), {d['overdue']}/{d['deadlines']} "
              f"overdue, ready +{k['ready_after_s'] and round(k['ready_after_s'], 1)} s")
    for d in r["deadletters_doubled"]:
        print(f"  dead letter twice: {d['reason']} ({d['stage']}) {d['source']} x{d['copies']}, "
              f"after kill {d['after_kill']} +{d['seconds_after_kill']} s")
    for e in r["log_errors"][:20]:
        print(f"  log {e['worker']} after kill {e['after_kill']} +{e['seconds_after_kill']} s "
              f"x{e['count']}: {e['text'][:140]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1, help="the first run's; then +1 each")
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--care-workers", type=int, default=250)
    parser.add_argument("--start-hour", type=float, default=6.0)
    parser.add_argument("--hours", type=float, default=4.0, help="the simulated morning")
    parser.add_argument("--speed", type=float, default=60.0,
                        help="simulated seconds per wall second")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--session-timeout", type=float, default=Settings.session_timeout_s,
                        help="ECM_SESSION_TIMEOUT_S of the workers")
    parser.add_argument("--every", type=float, nargs=2, default=(10.0, 30.0),
                        metavar=("MIN", "MAX"), help="wall seconds between kills")
    parser.add_argument("--pause", type=float, default=2.0,
                        help="wall seconds a killed worker stays down")
    parser.add_argument("--workdir", type=Path,
                        help="where the runs' logs and ledgers go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=RESULTS / "rotation.json")
    args = parser.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="ecm-rotation-"))
    runs = []
    for i in range(args.runs):
        runs.append(one_run(args.seed + i, args, root / f"run-{args.seed + i}"))
        _print_run(runs[-1])
    result = {"machine": machine(), "args": {k: v if not isinstance(v, Path) else str(v)
                                             for k, v in vars(args).items()},
              "clean_runs": sum(r["clean"] for r in runs), "runs": runs}
    line = json.dumps(result, default=str)
    if args.out:
        args.out.write_text(line + "\n")
    print(line)
    return 0 if all(r["clean"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
