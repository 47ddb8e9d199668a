"""``ecm simulate``: build a region's day, optionally start a broker and workers on the
simulated clock, play the day into Kafka, and grade the monitor."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson

from simulator.cases import expect_cases, priority
from simulator.desk import Desk, play_desk
from simulator.ledger import Ledger, build_ledger
from simulator.player import play
from simulator.records import expect_records
from simulator.runs import expect_runs
from simulator.scenario import Rates, SimConfig, build_scenario
from simulator.score import (
    format_report,
    read_topic,
    score,
    score_cases,
    score_runs,
    summary_json,
)
from simulator.score_records import score_records, score_review_visits
from simulator.watch import EscalationWatch
from stream.clock import ScaledClock
from stream.settings import Settings

# Wall seconds between launching workers and the simulated clock's origin.
_STARTUP_WALL_S = 3.0
# Wall seconds to let the workers finish after the last message before scoring.
_DRAIN_WALL_S = 6.0


class Fault(Protocol):
    """Something done to the workers while the day is played (tests/chaos): it begins once
    they are ready, before the first message, and ends when the last message is sent,
    before the drain and the scoring; it must leave every worker running and ready."""

    def begin(self, workers: list[Worker], clock: ScaledClock) -> None: ...

    def end(self) -> None: ...


def simulate(config: SimConfig, settings: Settings, *, ledger_path: Path,
             embedded: bool = False, worker_procs: int = 0, do_score: bool = True,
             as_json: bool = False, workdir: Path | None = None,
             on_ready: Callable[[list[int], ScaledClock], None] | None = None,
             worker_changes: Sequence[Mapping[str, Any]] = (),
             fault: Fault | None = None) -> dict[str, Any]:
    """Build the day, play it, and grade the monitor. ``on_ready`` is called with the web
    ports of the workers it started, and the simulated clock, once they are ready and
    before the day is played (a test's faults start from there). ``worker_changes[i]``
    changes the settings of the i-th worker started (e.g. its ``store``): a cluster of
    mixed stores. ``fault`` is given the workers themselves, to kill and restart them."""
    # The ledger judges with the workers' own grace period and clock tolerance.
    config = dataclasses.replace(config, unscheduled_grace_s=settings.unscheduled_grace_s,
                                 future_tolerance_s=settings.future_tolerance_s)
    t = time.monotonic()
    sc = build_scenario(config)
    thresholds = (settings.safeguarding_missed, settings.safeguarding_late,
                  settings.safeguarding_window_s)
    ledger = build_ledger(sc, thresholds, settings.match_window_s)
    desk = None
    if config.desk:
        # The desk acts on the missed visits the monitor raises; its recovery visits and
        # actions join the day, and the ledger is derived again with them. What the cases
        # must show is derived once the day is played: the desk acts on what it sees.
        missed = [(e.escalation_id, e.deadline,
                   priority("missed", sc.facts[e.escalation_id.rsplit(":", 1)[0]].doc))
                  for e in ledger.expected if e.kind == "missed" and e.scored]
        desk = play_desk(sc, missed, settings, config.seed + 1)
        ledger = build_ledger(sc, thresholds, settings.match_window_s)
    if config.runs:
        ledger.runs = expect_runs(sc, ledger.score_until).to_doc()
        settings = settings.with_(runs=True)
    ledger.records = expect_records(sc, ledger, run_causes=_run_causes(ledger))
    ledger_path.write_bytes(orjson.dumps(ledger.to_doc()))
    n_events = sum(len(m.records or []) for m in sc.messages if m.topic == "events")
    print(f"built {len(sc.roster.visits):,} visits ({len(sc.facts):,} in the window) for "
          f"{len(sc.region.clients):,} clients and {len(sc.region.workers):,} workers, "
          f"{n_events:,} events, in {time.monotonic() - t:.1f} s; ledger {ledger_path}",
          flush=True)
    from stream.broker import EmbeddedBroker, free_port
    from stream.topics import ensure_topics

    broker = EmbeddedBroker(free_port()).start() if embedded else None
    workers: list[Any] = []
    try:
        if broker is not None:
            settings = settings.with_(broker=broker.bootstrap)
        ensure_topics(settings)
        window_start, window_end = config.window
        sim_origin = window_start - config.lead_s
        wall_origin = time.time() + _STARTUP_WALL_S
        clock = ScaledClock(sim_origin, wall_origin, config.speed)
        run_settings = settings.with_(clock_sim_start=sim_origin, clock_wall_start=wall_origin,
                                      clock_speed=config.speed,
                                      sweep_interval_s=min(settings.sweep_interval_s, 0.2))
        if worker_procs:
            workers = _start_workers(run_settings, worker_procs, workdir or ledger_path.parent,
                                     worker_changes)
        else:
            print("run workers with these settings (the simulated clock):")
            for k in ("ECM_CLOCK_SIM_START", "ECM_CLOCK_WALL_START", "ECM_CLOCK_SPEED"):
                print(f"  {k}={run_settings.as_env()[k]}")
        _wait_ready(workers, clock.wall_at(window_start))
        if on_ready is not None:
            on_ready([w.settings.web_port for w in workers], clock)
        if fault is not None:
            fault.begin(workers, clock)
        watch = EscalationWatch(settings).start() if desk is not None else None
        try:
            stats = play(sc.messages, settings, clock, config.batch_size, until=window_end,
                         watch=watch, guard_s=sc.config.guard_s)
            if fault is not None:
                fault.end()
            print(f"sent {stats.events:,} events and {stats.roster:,} roster records in "
                  f"{stats.messages:,} messages over {stats.seconds:.1f} s "
                  f"({stats.events_per_s:,.0f} events/s); at most "
                  f"{stats.behind_max_s:.0f} simulated s behind the clock, "
                  f"{stats.sent_late:,} messages later than the guard band "
                  f"({sc.config.guard_s:.0f} s)", flush=True)
            if not do_score:
                return {}
            time.sleep(_DRAIN_WALL_S)
        finally:
            if watch is not None:
                watch.stop()
        if desk is not None and watch is not None:
            _derive_cases(sc, ledger, desk, settings, stats.sent,
                          {eid: clock.from_wall(at) for eid, at in watch.seen.items()})
            ledger.records = expect_records(sc, ledger, _declined(ledger, desk),
                                            _run_causes(ledger))
            ledger_path.write_bytes(orjson.dumps(ledger.to_doc()))
        report = _score(ledger, settings)
        report["events_sent"] = stats.events
        report["actions_sent"] = stats.actions
        report["player"] = {"behind_max_s": stats.behind_max_s, "sent_late": stats.sent_late}
        # The whole report, with the ids of what was missed, beside the ledger.
        ledger_path.with_suffix(".report.json").write_bytes(
            orjson.dumps(report, default=str, option=orjson.OPT_NON_STR_KEYS))
        print(format_report(report))
        if as_json:
            print(summary_json(report))
        return report
    finally:
        if fault is not None:
            fault.end()
        for w in workers:
            w.stop()
        if broker is not None:
            broker.stop()


def _run_causes(ledger: Ledger) -> dict[str, str] | None:
    return None if ledger.runs is None else ledger.runs["causes"]


def _declined(ledger: Ledger, desk: Desk) -> dict[str, float]:
    """Per visit, when the desk's close of its case as ``client_declined`` reached Kafka,
    where the cases' truth has it applied."""
    cases = ledger.cases or {}
    refused = set(cases.get("refusals", {})) | set(cases.get("unjudged_actions", ()))
    out = {}
    for a in desk.actions:
        doc = a.doc
        if (doc["type"] == "close" and doc["final_outcome_code"] == "client_declined"
                and doc["action_id"] not in refused and a.received != math.inf):
            vid = doc["escalation_id"].rsplit(":", 1)[0]
            out[vid] = min(out.get(vid, math.inf), a.received)
    return out


def _derive_cases(sc: Any, ledger: Ledger, desk: Desk, settings: Settings,
                  sent: Mapping[str, float], seen: Mapping[str, float]) -> None:
    """What the cases must show, from the day's facts: when each of the desk's actions
    reached Kafka (never, if its escalation never reached the desk), and when each
    escalation reached the topic (the monitor raised it no later)."""
    for a in desk.actions:
        a.received = sent.get(a.doc["action_id"], math.inf)
    truth = expect_cases(sc, ledger.expected, desk, settings, seen)
    ledger.cases = truth.to_doc()
    for reason in truth.refusals.values():
        ledger.deadletters[reason] = ledger.deadletters.get(reason, 0) + 1


def score_command(settings: Settings, ledger_path: Path, as_json: bool) -> dict[str, Any]:
    ledger = Ledger.from_doc(orjson.loads(ledger_path.read_bytes()))
    report = _score(ledger, settings)
    print(format_report(report))
    if as_json:
        print(summary_json(report))
    return report


def _score(ledger: Ledger, settings: Settings) -> dict[str, Any]:
    escalations = read_topic(settings, settings.topic_escalations)
    deadletters = read_topic(settings, settings.topic_deadletter)
    report = score(ledger, escalations, deadletters)
    cases = score_cases(ledger, escalations, deadletters)
    if cases is not None:
        report["cases"] = cases
    runs = score_runs(ledger, escalations)
    if runs is not None:
        report["runs"] = runs
    if settings.visit_records:
        records = score_records(ledger, read_topic(settings, settings.topic_visits))
        if records is not None:
            report["records"] = records
    reviews = score_review_visits(ledger, escalations)
    if reviews is not None:
        report["safeguarding_visits"] = reviews
    return report


class Worker:
    """``ecm worker`` in a child process on the simulated clock, with its own web port, data
    dir and log. It can be killed and started again with the same settings, as a crash and
    a supervisor's restart would: the same data dir, so a RocksDB store finds its files."""

    def __init__(self, settings: Settings, workdir: Path, n: int) -> None:
        from stream.broker import free_port

        self.name = f"worker-{n}"
        self.settings = settings.with_(web_port=free_port(),
                                       datadir=str(workdir / self.name))
        self.log = workdir / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Launch the process; a restarted worker's log is appended to its predecessor's."""
        with self.log.open("ab" if self.process is not None else "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stream.cli", "worker"],
                env={**os.environ, **self.settings.as_env()},
                stdout=out, stderr=subprocess.STDOUT)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.settings.web_port}/readyz"
            with urllib.request.urlopen(url, timeout=1) as r:
                return bool(json.loads(r.read()).get("ready"))
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, no commit, no goodbye to the group."""
        kill(self.process)

    def stop(self) -> None:
        stop(self.process)


def kill(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL a worker process, if it runs, and reap it."""
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait()


def stop(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM a worker process, if it runs; SIGKILL it if it is not gone in 20 s."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            kill(process)


def _start_workers(settings: Settings, n: int, workdir: Path,
                   changes: Sequence[Mapping[str, Any]] = ()) -> list[Worker]:
    workdir.mkdir(parents=True, exist_ok=True)
    return [Worker(settings.with_(**(changes[i] if i < len(changes) else {})), workdir, i)
            for i in range(n)]


def _wait_ready(workers: list[Worker], by_wall: float) -> None:
    while workers and time.time() < by_wall + 60:
        if all(w.ready() for w in workers):
            return
        for w in workers:
            if not w.running:
                raise RuntimeError(f"a worker exited; see {w.log}")
        time.sleep(0.2)
    if workers:
        print("warning: workers not ready when the window opened", file=sys.stderr)


def config_from_args(args: Any) -> SimConfig:
    rates = Rates()
    for spec in args.rate or []:
        name, _, value = spec.partition("=")
        if not hasattr(rates, name):
            known = [f.name for f in dataclasses.fields(Rates)]
            raise SystemExit(f"unknown rate {name!r}; one of {known}")
        setattr(rates, name, float(value))
    return SimConfig(seed=args.seed, clients=args.clients, workers=args.workers,
                     date=args.date, start_hour=args.start_hour,
                     hours=args.hours + 24.0 * (getattr(args, "days", 1) - 1),
                     days=getattr(args, "days", 1),
                     speed=args.speed, batch_size=args.batch_size, rates=rates,
                     desk=not getattr(args, "no_desk", False),
                     runs=bool(getattr(args, "runs", False)))
