"""What visit records cost the quiet path: ``python -m benchmarks.records``, and a section of
``python -m benchmarks.pipeline``.

The quiet path of a visit is its roster record, a check-in at the home and a check-out an
hour later, nothing raised; the record is written at the check-out. Side by side, in one
run on one embedded broker, alternating: a worker with visit records off
(``ECM_VISIT_RECORDS=false``) and one with them on, each with topics of its own, loads the
same roster of visits scheduled an hour ago (deadlines a day off, so none falls due), then
works off a backlog of their check-ins and then one of their check-outs (100 to a
message, keyed), paused (SIGSTOP) while each is produced. The figure is events/s over both
backlogs, records on against off; the target (issue 26) is at most 10% more cost, a ratio
of 0.9 or more. With records on, ``ecm.visits`` must then hold exactly one record per
visit, each ``attended`` and ``on_time``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import workload as wl
from stream.broker import EmbeddedBroker, free_port
from stream.settings import Settings
from stream.timeutil import format_instant
from stream.topics import ensure_topics

_FAR_S = 86400.0  # deadlines a day after the start: none falls due during the run


def _visit(i: int, start: float) -> dict[str, Any]:
    return wl.visit(i, start, prefix="rv", late_after_s=_FAR_S, missed_after_s=_FAR_S) | {
        "no_checkout_after_s": _FAR_S}


def _event(i: int, kind: str, at: str) -> dict[str, Any]:
    lat, lon = wl.home(i)
    return {"event_id": f"rv{kind}{i}", "type": kind, "client_id": f"rvc{i}",
            "worker_id": f"bw{i % 40_000}", "visit_id": f"rv{i}", "occurred_at": at,
            "method": "gps", "lat": lat, "lon": lon, "accuracy_m": 10.0}


def cpu_s(pid: int) -> float:
    """CPU seconds used so far by a process and its descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        used[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total = 0.0
    for p in used:
        q = p
        while q and q != pid:
            q = parents.get(q, 0)
        if q == pid:
            total += used[p]
    return total


def one_worker(base: Settings, visits: int, records: bool, n: int, workdir: Path,
               broker_pid: int | None = None) -> dict[str, Any]:
    from benchmarks.pipeline import Worker, _progress_since, produce, wait_for

    app = f"bench-rec-{'on' if records else 'off'}-{n}"
    s = base.with_(app_id=app, visit_records=records, topic_roster=f"{app}.roster",
                   topic_events=f"{app}.events", topic_work=f"{app}.work",
                   topic_state=f"{app}.state", topic_escalations=f"{app}.escalations",
                   topic_deadletter=f"{app}.deadletter", topic_runs=f"{app}.runs",
                   topic_visits=f"{app}.visits")
    bootstrap = s.bootstrap_servers[0]
    ensure_topics(s)
    start = time.time() - 3900.0  # an hour and five minutes ago
    produce(bootstrap, s.topic_roster, wl.keyed_messages(
        (_visit(i, start) for i in range(visits)), 1000, s.partitions))
    w = Worker(s, workdir, app)
    out: dict[str, Any] = {}
    try:
        wait_for(w.ingest, visits, 900, f"{app} roster", w.alive)
        seconds = 0.0
        for kind, at in (("check_in", start + 60.0), ("check_out", start + 3660.0)):
            before = w.progress("event")
            w.proc.signal(signal.SIGSTOP)
            cpu = (cpu_s(w.proc.p.pid), cpu_s(broker_pid) if broker_pid else 0.0)
            try:
                produce(bootstrap, s.topic_events, wl.keyed_messages(
                    (_event(i, kind, format_instant(at)) for i in range(visits)), 100,
                    s.partitions))
            finally:
                w.proc.signal(signal.SIGCONT)
                resumed = time.perf_counter()
            got = wait_for(functools.partial(_progress_since, w, before), visits, 900,
                           f"{app} {kind}s", w.alive, resumed)
            out[f"{kind}_events_per_s"] = round(got.rate)
            seconds += got.seconds
            # What each event cost the worker, and the broker (from the produce on).
            out[f"{kind}_worker_cpu_us"] = round(1e6 * (cpu_s(w.proc.p.pid) - cpu[0]) / visits, 1)
            if broker_pid:
                out[f"{kind}_broker_cpu_us"] = round(
                    1e6 * (cpu_s(broker_pid) - cpu[1]) / visits, 1)
        out["events_per_s"] = round(2 * visits / seconds)
        time.sleep(1.0)  # the last batch's records are published after its count
    finally:
        w.proc.stop()
    if records:
        from simulator.score import read_topic

        docs = read_topic(s, s.topic_visits)
        per_visit = Counter(d["visit_id"] for d in docs)
        out["records"] = len(docs)
        out["records_wrong"] = (visits - len(per_visit)
                                + sum(n - 1 for n in per_visit.values())
                                + sum(1 for d in docs if (d["outcome"], d["timeliness"])
                                      != ("attended", "on_time")))
    return out


def side_by_side(base: Settings, visits: int, workdir: Path, rounds: int = 2,
                 log: Any = print, broker_pid: int | None = None) -> dict[str, Any]:
    """Records off and on, alternating, ``rounds`` times each: the medians, their ratio."""
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for n in range(rounds):
        for name in ("off", "on"):
            got = one_worker(base, visits, name == "on", n, workdir, broker_pid)
            log(f"visit records {name}: {got['events_per_s']:,} events/s")
            runs[name].append(got)
    out: dict[str, Any] = {"visits": visits, "rounds": rounds}
    for name, got in runs.items():
        for key in ("events_per_s", "check_in_events_per_s", "check_out_events_per_s",
                    "check_out_worker_cpu_us", "check_out_broker_cpu_us"):
            if key in got[0]:
                out[f"{key}_{name}"] = round(statistics.median(g[key] for g in got), 1)
    out["records_wrong"] = sum(g["records_wrong"] for g in runs["on"])
    out["records_per_round"] = runs["on"][0]["records"]
    out["quiet_on_vs_off"] = round(out["events_per_s_on"] / out["events_per_s_off"], 3)
    out["check_out_on_vs_off"] = round(
        out["check_out_events_per_s_on"] / out["check_out_events_per_s_off"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.records", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--visits", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, help="also write the JSON result here")
    args = p.parse_args(argv)
    from benchmarks.pipeline import machine

    workdir = Path(tempfile.mkdtemp(prefix="ecm-bench-records-"))
    with EmbeddedBroker(free_port()) as broker:
        base = Settings(broker=broker.bootstrap, log_level="warn", session_timeout_s=20.0)
        result = side_by_side(base, args.visits, workdir, args.rounds,
                              log=lambda s: print(s, flush=True),
                              broker_pid=broker.process.pid if broker.process else None)
    result["machine"] = machine()
    result["command"] = "python -m benchmarks.records " + " ".join(argv or sys.argv[1:])
    ok = result["quiet_on_vs_off"] >= 0.9 and result["records_wrong"] == 0
    print(f"quiet path with visit records on / off: {result['quiet_on_vs_off']} "
          f"(target >= 0.9: {'met' if ok else 'MISSED'}); check-outs alone "
          f"{result['check_out_on_vs_off']}; records wrong {result['records_wrong']}")
    line = json.dumps(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
