"""Throughput and detection latency of the whole pipeline: ``python -m benchmarks.pipeline``.

One run, one embedded broker, real ``ecm worker`` processes, measured side by side:

1. roster ingest: a roster in 1,000-visit messages is produced first, then a worker starts;
   visits/s until ``ecm_visits_tracked`` holds all of it (memory://), and the worker's RSS
   then and once settled (freed pages handed back, a few seconds later);
2. event throughput: the worker is paused (SIGSTOP) while a backlog of check-ins is produced,
   then resumed; check-ins/s until ``ecm_records_accepted_total{kind="event"}`` holds all of
   them, with 100-event messages and then with one event per message. Inputs are produced
   keyed, as docs/contract.md recommends (each message to its clients' partition), so records
   skip the ``ecm.work`` hop; the two backlogs are then repeated unkeyed, side by side;
   The storm follows: every check-in 2 km from its visit, each raising one
   ``location_mismatch``, as backlogs of the same four kinds (keyed and unkeyed, 100 and 1
   per message); check-ins (and escalations) per second, and their ratio to the quiet path;
3. detection latency under load: visits whose late deadlines fall due continuously are added,
   with as many more again (the timer storm, ``timer_storm_visits``) all late at one instant
   halfway through, and check-ins stream at a fixed rate meanwhile; escalation publish time
   (its Kafka timestamp) minus deadline, p50 / p99 / max, for the storm and the others;
   then an hour's outage: the worker stops, visits whose late deadlines fell over the past
   hour are booked, check-ins pile up, and a restarted worker (rebuilt from ``ecm.state``)
   works the backlog off (check-ins/s, against the quiet path's) and raises each deadline
   once (seconds from the restart to each publication);
4. the escalation topic is read back: every wrong-place check-in and every unattended
   latency visit must have raised exactly one escalation, and nothing else may have;
5. the same roster into a rocksdb:// worker: ingest rate and RSS;
6. the client limit (aiokafka + orjson) and the Faust floor (a bare agent) over the same
   messages;
7. the two input lanes (``ECM_INPUT_LANE``): a worker with each loads the same smaller
   roster and works off the same one-event and 100-event backlogs, every escalation
   checked; visit records off and on (``benchmarks/records.py``): the same roster's
   check-ins and check-outs, each visit's record checked; then the idiomatic per-event
   Faust baseline (``benchmarks/baseline.py``);
8. the timer sweep over the tracked visits, in process, as the worker runs it (loaded state
   frozen out of the collector's sight): idle, and five busy sweeps of 1,000 and more
   deadlines each, the median held to the target.

Every figure is printed as a table and the last line is one JSON object; ``--out`` also writes
it to a file. ``--scale small`` is the seconds-long variant the test suite runs.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from benchmarks import workload as wl
from simulator.score import read_stamped
from stream.broker import EmbeddedBroker, free_port
from stream.contract.records import lifecycle
from stream.settings import Settings
from stream.timeutil import parse_instant
from stream.topics import ensure_topics
from stream.worker.heap import Heap

ROOT = Path(__file__).resolve().parents[1]
# How often a timed run polls the worker's /progress. A window runs from the last poll
# before the router counts anything to the first poll that sees the work done, so it is
# about one interval longer than the work: 5% of a 2 s backlog at 0.1 s, 2.5% at 0.05 s.
# A poll costs the worker about 0.2 ms (0.4% of its time at this rate).
_POLL_S = 0.05


@dataclass(frozen=True)
class Scale:
    visits: int
    batched_events: int
    single_events: int
    unkeyed_batched_events: int
    unkeyed_single_events: int
    latency_s: float
    latency_rate: int
    latency_visits: int
    baseline_single: int
    baseline_batched: int
    sweep_visits: int
    lane_visits: int
    lane_batched_events: int
    storm_batched_events: int
    storm_single_events: int
    timer_storm_visits: int
    outage_visits: int
    outage_events: int
    rocksdb: bool = True


SCALES = {
    "full": Scale(visits=1_000_000, batched_events=200_000, single_events=20_000,
                  unkeyed_batched_events=200_000, unkeyed_single_events=10_000,
                  latency_s=40.0, latency_rate=10_000, latency_visits=20_000,
                  baseline_single=2_000, baseline_batched=5_000,
                  sweep_visits=1_000_000, lane_visits=200_000, lane_batched_events=100_000,
                  storm_batched_events=100_000, storm_single_events=10_000,
                  timer_storm_visits=100_000, outage_visits=50_000, outage_events=50_000),
    "small": Scale(visits=20_000, batched_events=6_000, single_events=1_000,
                   unkeyed_batched_events=4_000, unkeyed_single_events=500,
                   latency_s=6.0, latency_rate=400, latency_visits=600,
                   baseline_single=200, baseline_batched=500,
                   sweep_visits=20_000, lane_visits=4_000, lane_batched_events=2_000,
                   storm_batched_events=2_000, storm_single_events=400,
                   timer_storm_visits=2_000, outage_visits=1_000, outage_events=1_000,
                   rocksdb=False),
}


# ---- plumbing ----------------------------------------------------------------------------

def _producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=1 << 20,
                         max_request_size=8 << 20)


def produce(bootstrap: str, topic: str,
            values: list[bytes] | list[tuple[int | None, bytes]]) -> float:
    """Send ``values`` (each a value, or a ``(partition, value)`` pair) and wait for the
    broker; returns the seconds it took."""
    started = time.perf_counter()
    producer = _producer(bootstrap)
    for v in values:
        if isinstance(v, tuple):
            producer.send(topic, v[1], partition=v[0])
        else:
            producer.send(topic, v)
    producer.flush()
    producer.close()
    return time.perf_counter() - started


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if new:
            admin.create_topics(new)
    finally:
        admin.close()


def scrape(port: int) -> dict[str, float]:
    """The worker's metrics, keyed ``name{label=value,...}``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def get_json(port: int, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


class Unanswered:
    """A poll that outlasts a worker busy past the page's timeout: the last answer stands
    meanwhile, and :attr:`longest` is the longest stretch without one."""

    def __init__(self, poll: Callable[[], Any]) -> None:
        self.poll = poll
        self.last: Any = (0.0, 0.0)
        self.answered = time.perf_counter()
        self.longest = 0.0

    def __call__(self) -> Any:
        try:
            self.last = self.poll()
        except (TimeoutError, urllib.error.URLError):
            pass
        else:
            self.answered = time.perf_counter()
        self.longest = max(self.longest, time.perf_counter() - self.answered)
        return self.last


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


# A worker hands freed pages back at most every 5 s during a load, and once more within a
# sweep interval after it (stream.worker.heap.Heap.trim_if_due): its steady RSS is read after that.
_SETTLE_S = 6.0


def settled_rss_mb(pid: int) -> float:
    time.sleep(_SETTLE_S)
    return round(rss_mb(pid), 1)


@dataclass
class Progress:
    """How fast a counter went from where it stood to a target."""

    count: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")


def wait_for(read: Callable[[], float | tuple[float, float]], target: float, timeout_s: float,
             what: str, alive: Callable[[], bool] = lambda: True,
             resumed: float | None = None) -> Progress:
    """Poll ``read`` until it reaches ``target``.

    ``read`` returns the count of records done, or ``(done, seen)`` where ``seen`` counts
    them at the first stage of a pipeline. The clock runs from the last poll at which
    ``seen`` had not moved yet to the first poll that saw ``done`` reach the target: a rate
    is never flattered by more than one poll interval, nor by the time the first stage
    spent before the last stage counted anything. ``resumed`` is when a paused worker was
    let go, for a ``read`` that counts from zero at that instant: if the first poll finds
    ``seen`` moved already, the clock runs from ``resumed`` (a small backlog can be all
    seen before the first poll, which left no poll before it to start from).
    """
    def both() -> tuple[float, float]:
        got = read()
        return got if isinstance(got, tuple) else (got, got)

    start_done, start_seen = both()
    t_start = time.perf_counter()
    deadline = t_start + timeout_s
    moved = resumed is not None and start_seen > 0
    if moved:
        start_done, t_start = 0.0, resumed
    while True:
        done, seen = both()
        now = time.perf_counter()
        if seen == start_seen and not moved:
            t_start = now
        if done >= target:
            return Progress(int(target - start_done), now - t_start)
        if now > deadline or not alive():
            raise RuntimeError(f"{what}: {done} of {target} after {timeout_s} s")
        time.sleep(_POLL_S)


class Proc:
    """A child process with its own log, started from the project root."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.p = subprocess.Popen(args, env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
                                  cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.p.poll() is None

    def signal(self, sig: int) -> None:
        self.p.send_signal(sig)

    def stop(self) -> None:
        if self.alive():
            self.p.terminate()
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def wait_page(port: int, proc: Proc, path: str = "/healthz", timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"process exited:\n{proc.tail()}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"no web page on {port}:\n{proc.tail()}")


# ---- the ECM worker --------------------------------------------------------------------------

class Worker:
    def __init__(self, settings: Settings, workdir: Path, name: str) -> None:
        self.settings = settings.with_(web_port=free_port(), datadir=str(workdir / name))
        self.proc = Proc([sys.executable, "-m", "stream.cli", "worker"],
                         self.settings.as_env(), workdir / f"{name}.log")
        self.port = self.settings.web_port
        wait_page(self.port, self.proc)

    # The polls read /progress, not /metrics: a metrics scrape costs the worker about 2 ms,
    # 2% of its time at ten polls a second, and /progress a tenth of that.
    def progress(self, kind: str) -> tuple[float, float]:
        """Records of ``kind`` applied by the detector, and received by the router."""
        p = get_json(self.port, "/progress")
        return float(p["accepted"][kind]), float(p["received"][kind])

    def tracked(self) -> float:
        return float(get_json(self.port, "/progress")["visits_tracked"])

    def ingest(self) -> tuple[float, float]:
        """Visits tracked, and roster records received by the router, from one poll."""
        p = get_json(self.port, "/progress")
        return float(p["visits_tracked"]), float(p["received"]["roster"])

    def alive(self) -> bool:
        return self.proc.alive()


def read_escalations(bootstrap: str, topic: str) -> list[tuple[float, dict[str, Any]]]:
    """Every record on ``topic``: (publish time from the Kafka timestamp, record). Read to
    the partitions' ends, however long a fetch takes: iterating until the consumer fell
    quiet for 3 s stopped short of 300,000 records' tail once."""
    return [(t or 0.0, doc) for doc, t in read_stamped(Settings(broker=bootstrap), topic)]


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    a = np.asarray(values)
    return {"n": int(a.size), "p50": round(float(np.percentile(a, 50)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "max": round(float(a.max()), 3)}


# ---- the yardsticks ----------------------------------------------------------------------

async def _client_limit(bootstrap: str, topic: str, events: int) -> float:
    """aiokafka + orjson: events/s reading ``topic`` from the start."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    try:
        seen = 0
        started = time.perf_counter()
        while seen < events:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for r in records:
                    doc = orjson.loads(r.value)
                    seen += len(doc) if isinstance(doc, list) else 1
        return events / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def client_limit(bootstrap: str, topic: str, events: int) -> float:
    return asyncio.run(_client_limit(bootstrap, topic, events))


def faust_floor(bootstrap: str, topic: str, per: int, events: int, workdir: Path,
                quiet: bool = False) -> float:
    """The bare Faust agent's events/s; ``quiet``: with the worker's monitor instead of
    Faust's default (``stream.worker.faust_patches.QuietMonitor``)."""
    port = free_port()
    name = f"floor-{topic}{'-quiet' if quiet else ''}"
    proc = Proc([sys.executable, "-m", "benchmarks.floor", "worker", "-l", "warn",
                 "--web-port", str(port)],
                {"BENCH_BROKER": bootstrap, "BENCH_TOPIC": topic, "BENCH_PER_MESSAGE": str(per),
                 "BENCH_WEB_PORT": str(port), "BENCH_DATADIR": str(workdir / name),
                 "BENCH_QUIET_MONITOR": "1" if quiet else "0"},
                workdir / f"{name}.log")
    try:
        wait_page(port, proc, "/count")
        return wait_for(lambda: get_json(port, "/count")["events"], events, 900,
                        f"Faust floor, {per}-event messages", proc.alive).rate
    finally:
        proc.stop()


def _stages(port: int, kind: str) -> tuple[float, float]:
    c = get_json(port, "/count")
    return c[kind], c[f"{kind}_split"]


def baseline(bootstrap: str, scale: Scale, start: float, workdir: Path) -> dict[str, Any]:
    prefix = "bench.base"
    partitions = 8
    create_topics(bootstrap, [f"{prefix}.roster", f"{prefix}.events", f"{prefix}.visits-by-id",
                              f"{prefix}.events-by-visit", f"{prefix}.escalations"], partitions)
    port = free_port()
    proc = Proc([sys.executable, "-m", "benchmarks.baseline", "worker", "-l", "warn",
                 "--web-port", str(port)],
                {"BENCH_BROKER": bootstrap, "BENCH_PREFIX": prefix, "BENCH_WEB_PORT": str(port),
                 "BENCH_PARTITIONS": str(partitions),
                 "BENCH_DATADIR": str(workdir / "baseline")}, workdir / "baseline.log")
    try:
        wait_page(port, proc, "/count")
        time.sleep(2.0)  # its first rebalance
        n = scale.baseline_single + scale.baseline_batched
        produce(bootstrap, f"{prefix}.roster",
                wl.messages(wl.roster(n, start, prefix="bb"), 1000))
        roster = wait_for(lambda: _stages(port, "visits"), n, 900, "baseline roster",
                          proc.alive)
        at = time.time()
        single = scale.baseline_single
        batched = scale.baseline_batched
        produce(bootstrap, f"{prefix}.events",
                wl.messages(wl.check_ins(0, single, at, prefix="bb"), 1))
        one = wait_for(lambda: _stages(port, "events"), single, 900,
                       "baseline 1-event messages", proc.alive)
        produce(bootstrap, f"{prefix}.events",
                wl.messages(wl.check_ins(single, single + batched, at, prefix="bb"), 100))
        hundred = wait_for(lambda: _stages(port, "events"), single + batched, 900,
                           "baseline 100-event messages", proc.alive)
        expected = sum(1 for i in range(single + batched) if wl.wrong_place(i))
        got = get_json(port, "/count")["escalations"]
        return {"roster_visits_per_s": round(roster.rate, 1),
                "events_per_s_1": round(one.rate, 1), "events_per_s_100": round(hundred.rate, 1),
                "escalations_expected": expected, "escalations": got}
    finally:
        proc.stop()


# ---- the two input lanes, side by side -----------------------------------------------------

def _progress_since(w: Worker, before: tuple[float, float]) -> tuple[float, ...]:
    """Check-ins applied and received since ``before`` (Worker.progress)."""
    return tuple(a - b for a, b in zip(w.progress("event"), before, strict=True))


def lanes_side_by_side(base: Settings, scale: Scale, start: float,
                       workdir: Path) -> dict[str, Any]:
    """The same workload through a worker with each input lane (``ECM_INPUT_LANE``):
    Faust's streams, and the batch lane (``stream/worker/lane.py``). Each worker has topics of its
    own, loads a roster of ``scale.lane_visits`` visits, then works off a backlog of
    one-check-in-per-message and one of 100-check-in messages; every wrong-place check-in
    must raise exactly one escalation, and nothing else may be raised."""
    out: dict[str, Any] = {}
    single, batched = scale.single_events, scale.lane_batched_events
    if single + batched > scale.lane_visits:
        raise ValueError("the lanes' roster is smaller than their backlogs")
    expected = {f"bl{i}:location_mismatch" for i in range(single + batched)
                if wl.wrong_place(i)}
    for lane in ("streams", "batch"):
        app = f"bench-lane-{lane}"
        s = base.with_(app_id=app, input_lane=lane, topic_roster=f"{app}.roster",
                       topic_events=f"{app}.events", topic_work=f"{app}.work",
                       topic_state=f"{app}.state", topic_escalations=f"{app}.escalations",
                       topic_visits=f"{app}.visits",
                       topic_deadletter=f"{app}.deadletter", topic_runs=f"{app}.runs")
        bootstrap = s.bootstrap_servers[0]
        ensure_topics(s)
        produce(bootstrap, s.topic_roster,
                wl.keyed_messages(wl.roster(scale.lane_visits, start, prefix="bl"), 1000,
                                  s.partitions))
        w = Worker(s, workdir, f"worker-lane-{lane}")
        try:
            ingest = wait_for(w.ingest, scale.lane_visits, 900, f"{lane} lane roster", w.alive)
            out[f"roster_visits_per_s_{lane}"] = round(ingest.rate)
            for per, lo, hi in ((1, 0, single), (100, single, single + batched)):
                before = w.progress("event")
                w.proc.signal(signal.SIGSTOP)
                try:
                    produce(bootstrap, s.topic_events,
                            wl.keyed_messages(wl.check_ins(lo, hi, time.time(), prefix="bl"),
                                              per, s.partitions))
                finally:
                    w.proc.signal(signal.SIGCONT)
                    resumed = time.perf_counter()
                got = wait_for(functools.partial(_progress_since, w, before), hi - lo, 900,
                               f"{lane} lane, {per}-event messages", w.alive, resumed)
                out[f"events_per_s_{per}_{lane}"] = round(got.rate)
            time.sleep(1.0)  # the last batch's escalations are published after its count
        finally:
            w.proc.stop()
        ids = Counter(r["escalation_id"] for _, r in read_escalations(bootstrap,
                                                                        s.topic_escalations))
        out[f"escalations_{lane}"] = {"missing": len(expected - ids.keys()),
                                      "false": len(ids.keys() - expected),
                                      "duplicate": sum(k - 1 for k in ids.values())}
    out["escalations_expected"] = len(expected)
    out["batch_vs_streams"] = {
        key: _ratio(out[f"{key}_batch"], out[f"{key}_streams"])
        for key in ("roster_visits_per_s", "events_per_s_1", "events_per_s_100")}
    return out


# ---- the timer sweep ---------------------------------------------------------------------

def sweep_benchmark(n: int, partitions: int) -> dict[str, Any]:
    """Seconds to sweep ``n`` tracked visits spread over ``partitions`` detectors."""
    from stream.clock import ManualClock
    from stream.contract import Source
    from stream.rules.detector import PartitionDetector
    from stream.topics import partition_for

    t0 = 1_795_000_000.0
    clock = ManualClock(t0)
    settings = Settings()
    detectors = [PartitionDetector(p, settings, clock) for p in range(partitions)]
    by_part: dict[int, list[Any]] = {p: [] for p in range(partitions)}
    for i in range(n):
        doc = wl.visit(i, t0 + 3600 + (i % 7200))
        by_part[partition_for(doc["client_id"], partitions)].append(
            ("roster", doc, Source("ecm.roster", 0, i)))
    for p, records in by_part.items():
        detectors[p].process(records)
        detectors[p].take_delta()
    del by_part
    # The collector as the worker runs it: loaded state frozen out of its sight.
    Heap.tune()
    Heap().settle()

    def sweep_all() -> tuple[float, int]:
        started = time.perf_counter()
        raised = sum(len(d.sweep().escalations) for d in detectors)
        return time.perf_counter() - started, raised

    sweep_all()  # the first sweep also runs the hourly purge scan
    idle = sorted(sweep_all()[0] for _ in range(21))
    # One sweep interval's worth of deadlines falling due at a busy morning's pace:
    # 3 million visits a day, so about 35 deadlines per second, 1,000 to be generous.
    # Five such sweeps, one after another (a single timing is at the mercy of the host).
    clock.advance(3600 + 900)
    busy = []
    for _ in range(5):
        clock.advance(math.ceil(1_000 * 7200 / n))  # whole seconds of starts: as many each
        busy.append(sweep_all())
    busy.sort()
    return {"visits": n, "sweep_idle_ms_median": round(idle[10] * 1000, 3),
            "sweep_idle_ms_max": round(idle[-1] * 1000, 3),
            "sweep_1000_due_ms": round(busy[2][0] * 1000, 3),
            "sweep_1000_due_ms_max": round(busy[-1][0] * 1000, 3),
            "sweep_1000_due_raised": busy[2][1],
            "sweep_1000_due_raised_each": [r for _, r in busy]}


# ---- the run -----------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                            capture_output=True).stdout.strip()
    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "commit": commit}


class Profiler:
    """py-spy sampling a process from outside, as collapsed stacks (``--format raw``)."""

    def __init__(self, pid: int, out: Path) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.out = out
        self.proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--format", "raw",
                                      "--rate", "200", "--output", str(out), "--nonblocking"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(30)
        return summarise_profile(self.out)


def summarise_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """Share of samples by the function on top of the stack (self time), and the share
    of samples inside each of the project's stages (inclusive time)."""
    own: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    total = 0
    # The router (route_batch) also applies the records that skip ecm.work; the work
    # detector (detect_batch) applies the forwarded ones. Either lane calls both.
    marks = {"route_batch": "router", "detect_batch": "work detector", "publish": "publish",
             "route (stream/worker/router.py": "decode and route",
             "sweep": "sweep", "process (stream/rules/detector.py": "rules",
             "take_delta": "state delta", "encode_delta": "state delta",
             "locate": "geofence kernel",
             "visit (stream/contract/codec.py": "roster validation", "settle": "gc freeze"}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1].split(" (")[0] + " (" + frames[-1].split(" (")[-1].split(":")[0]
            .rsplit("/", 1)[-1]] += n
        seen = {label for frame in frames for key, label in marks.items() if key in frame}
        for label in seen:
            stages[label] += n
    share = {k: round(100.0 * v / total, 1) for k, v in own.most_common(top)} if total else {}
    return {"samples": total,
            "self_pct": share,
            "stage_pct": {k: round(100.0 * v / total, 1) for k, v in stages.most_common()}}


def run(scale: Scale, workdir: Path, log: Callable[[str], None] = print,
        profile: bool = False, runs: bool = False) -> dict[str, Any]:
    port = free_port()
    result: dict[str, Any] = {"machine": machine(), "scale": asdict(scale), "runs": runs}
    with EmbeddedBroker(port) as broker:
        bootstrap = broker.bootstrap
        base = Settings(broker=bootstrap, app_id="bench-m", topic_roster="bench.roster",
                        topic_events="bench.events", topic_work="bench-m.work",
                        topic_state="bench-m.state", topic_escalations="bench-m.escalations",
                        topic_visits="bench-m.visits",
                        topic_deadletter="bench-m.deadletter", log_level="warn",
                        # Outlives the pause (SIGSTOP) while a backlog is produced.
                        session_timeout_s=20.0, runs=runs, topic_runs="bench-m.runs")
        result["settings"] = {k: v for k, v in base.as_env().items()
                              if k.startswith("ECM_") and "TOPIC" not in k}
        ensure_topics(base)
        # Laid out like the events topic, so the yardsticks read what the worker reads.
        create_topics(bootstrap, ["bench.raw.100", "bench.raw.1"], base.partitions)
        run_start = time.time()
        far = run_start + 4 * 3600  # checked-in visits: no timer falls due during the run

        log(f"building and producing a roster of {scale.visits:,} visits")
        roster = wl.keyed_messages(wl.roster(scale.visits, far), 1000, base.partitions)
        produce_s = produce(bootstrap, base.topic_roster, roster)
        del roster
        result["roster_produce_visits_per_s"] = round(scale.visits / produce_s)

        started = time.perf_counter()
        m = Worker(base, workdir, "worker-memory")
        profiler = Profiler(m.proc.p.pid, workdir / "profile-roster.txt") if profile else None
        ingest = wait_for(m.ingest, scale.visits, 1800,
                          "roster ingest", m.alive)
        if profiler is not None:
            result["profile_roster"] = profiler.stop()
        result["roster_ingest_visits_per_s"] = round(ingest.rate)
        result["roster_ready_after_start_s"] = round(time.perf_counter() - started, 2)
        result["rss_mb_memory_roster_at_ready"] = round(rss_mb(m.proc.p.pid), 1)
        result["rss_mb_memory_roster"] = settled_rss_mb(m.proc.p.pid)
        log(f"roster ingest: {ingest.rate:,.0f} visits/s")

        def backlog(n: int, per: int, keyed: bool, tag: str, docs: Any) -> list[Any]:
            """Produce a backlog of check-ins while the worker is paused (SIGSTOP), then
            time it working them off: check-ins/s into ``events_per_s_<tag>``."""
            values = (wl.keyed_messages(docs, per, base.partitions) if keyed
                      else wl.messages(docs, per))
            before = m.progress("event")
            m.proc.signal(signal.SIGSTOP)
            try:
                produce(bootstrap, base.topic_events, values)
            finally:
                m.proc.signal(signal.SIGCONT)
                resumed = time.perf_counter()
            profiler = (Profiler(m.proc.p.pid, workdir / f"profile-{tag}.txt")
                        if profile and keyed else None)
            got = wait_for(functools.partial(_progress_since, m, before), n, 1800,
                           f"{tag}: {per}-event messages", m.alive, resumed)
            if profiler is not None:
                result[f"profile_events_{tag}"] = profiler.stop()
            result[f"events_per_s_{tag}"] = round(got.rate)
            log(f"{tag}: {got.rate:,.0f} check-ins/s")
            return values

        next_visit = 0
        # Keyed (each message sent to its clients' partition, as docs/contract.md recommends),
        # then the same without keys: every record then takes the ecm.work hop but 1 in N.
        for per, n, keyed in ((100, scale.batched_events, True), (1, scale.single_events, True),
                              (100, scale.unkeyed_batched_events, False),
                              (1, scale.unkeyed_single_events, False)):
            lo, hi = next_visit, next_visit + n
            next_visit = hi
            values = backlog(n, per, keyed, f"{per}" if keyed else f"{per}_unkeyed",
                             wl.check_ins(lo, hi, time.time()))
            if keyed:
                produce(bootstrap, f"bench.raw.{per}", values)
        result["rss_mb_memory_after_events"] = round(rss_mb(m.proc.p.pid), 1)

        # The storm: every check-in 2 km from its visit, each raising one location_mismatch,
        # side by side with the quiet path above. Second check-ins at visits of the first
        # backlog (their first ones were inside), with event ids of their own.
        stormed = 0
        for per, n, keyed in ((100, scale.storm_batched_events, True),
                              (1, scale.storm_single_events, True),
                              (100, scale.storm_batched_events // 2, False),
                              (1, scale.storm_single_events // 2, False)):
            lo, hi = stormed, stormed + n
            stormed = hi
            if hi > scale.batched_events:
                raise RuntimeError("the storm needs visits the first backlog checked in")
            backlog(n, per, keyed, f"storm_{per}" if keyed else f"storm_{per}_unkeyed",
                    wl.check_ins(lo, hi, time.time(), tag="s", away=True))

        # Detection latency: deadlines falling due continuously while check-ins stream.
        lead = 10.0
        t0 = time.time() + lead
        spacing = scale.latency_s / scale.latency_visits
        late_after = 900.0
        lat_docs = [wl.visit(i, t0 + i * spacing - late_after, prefix="lv",
                             late_after_s=late_after) for i in range(scale.latency_visits)]
        deadlines = {d["visit_id"]: t0 + i * spacing for i, d in enumerate(lat_docs)}
        # The timer storm: as many more visits late at one instant, halfway through.
        storm_at = t0 + scale.latency_s / 2
        lat_docs += [wl.visit(i, storm_at - late_after, prefix="sv", late_after_s=late_after)
                     for i in range(scale.timer_storm_visits)]
        deadlines.update({f"sv{i}": storm_at for i in range(scale.timer_storm_visits)})
        produce(bootstrap, base.topic_roster, wl.messages(lat_docs, 1000))
        wait_for(m.tracked, scale.visits + len(lat_docs), 120, "latency roster", m.alive)
        producer = _producer(bootstrap)
        per_tick = max(1, scale.latency_rate // 100)
        streamed_lo = next_visit
        tick = time.perf_counter()
        end = tick + lead + scale.latency_s + 2.0
        behind = 0.0
        # With --profile, the worker is sampled from just before the timer storm to 6 s on.
        storm_profile: Profiler | None = None
        storm_window = (storm_at - 0.5, storm_at + 6.0) if profile else None
        while tick < end:
            if storm_window is not None:
                wall = time.time()
                if storm_profile is None and wall >= storm_window[0]:
                    storm_profile = Profiler(m.proc.p.pid, workdir / "profile-timer-storm.txt")
                elif storm_profile is not None and wall >= storm_window[1]:
                    result["profile_timer_storm"] = storm_profile.stop()
                    storm_window = None
            if next_visit + per_tick > scale.visits:
                raise RuntimeError("the roster is too small for the latency stream")
            docs = wl.check_ins(next_visit, next_visit + per_tick, time.time())
            for p, value in wl.keyed_messages(docs, per_tick, base.partitions):
                producer.send(base.topic_events, value, partition=p)
            next_visit += per_tick
            tick += 0.01
            pause = tick - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            else:
                behind = max(behind, -pause)
        producer.flush()
        producer.close()
        streamed = next_visit - streamed_lo
        result["latency_stream_events"] = streamed
        result["latency_stream_events_per_s"] = round(streamed / (lead + scale.latency_s + 2.0))
        wait_for(lambda: m.progress("event"), next_visit, 300, "latency check-ins", m.alive)
        # Every deadline has passed; give the last ones the 2 s the target allows.
        time.sleep(max(0.0, max(deadlines.values()) + 2.0 - time.time()))
        metrics = scrape(m.port)
        result["sweep_worker_mean_ms"] = round(
            1000 * metrics.get("ecm_sweep_duration_seconds_sum{}", 0.0)
            / max(metrics.get("ecm_sweep_duration_seconds_count{}", 1.0), 1.0), 3)
        result["rss_mb_memory_after_latency"] = round(rss_mb(m.proc.p.pid), 1)
        m.proc.stop()

        # A restart after an hour's outage: while no worker runs, visits are booked whose
        # late deadlines fell over the past hour, never attended, and check-ins pile up. A
        # new worker (memory://: every partition rebuilt from ecm.state) works the backlog
        # off, and raises each deadline that fell due meanwhile, once.
        down = time.time()
        n_out = scale.outage_visits
        outage = {f"ov{i}": down - 3600 + i * 3600 / n_out for i in range(n_out)}
        produce(bootstrap, base.topic_roster, wl.messages(
            # Missed hours later: one late each, nothing else.
            [wl.visit(i, outage[f"ov{i}"] - late_after, prefix="ov", late_after_s=late_after,
                      missed_after_s=6 * 3600.0) for i in range(n_out)], 1000))
        n_back = min(scale.outage_events, scale.visits - next_visit)
        produce(bootstrap, base.topic_events, wl.keyed_messages(
            wl.check_ins(next_visit, next_visit + n_back, down), 100, base.partitions))
        next_visit += n_back
        restarted = time.time()
        m = Worker(base, workdir, "worker-restarted")
        polled = Unanswered(lambda: m.progress("event"))
        got = wait_for(polled, n_back, 1800, "the outage's backlog", m.alive)
        # The rebuild of a partition's visits holds the worker's event loop: the longest
        # stretch its web page did not answer.
        result["outage_restart_unanswered_s"] = round(polled.longest, 1)
        result["outage_backlog_events_per_s"] = round(got.rate)
        result["outage_backlog_done_after_restart_s"] = round(time.time() - restarted, 1)
        log(f"after an hour's outage: {got.rate:,.0f} check-ins/s")
        # The restarted worker's own count: every late it raises is one of the outage's.
        wait_for(lambda: sum(v for k, v in scrape(m.port).items()
                             if k.startswith("ecm_escalations_raised_total{kind=late")),
                 n_out, 600, "the outage's deadlines", m.alive)
        m.proc.stop()

        records = read_escalations(bootstrap, base.topic_escalations)
        result.update(check_escalations(records, next_visit, deadlines, streamed_lo, stormed,
                                        outage, restarted))
        log(f"escalations: {result['escalations_missing']} missing, "
            f"{result['escalations_false']} false, {result['escalations_duplicate']} duplicate")

        if scale.rocksdb:
            rs = base.with_(app_id="bench-r", topic_events="bench-r.events",
                            topic_work="bench-r.work", topic_state="bench-r.state",
                            topic_escalations="bench-r.escalations",
                            topic_visits="bench-r.visits",
                            topic_deadletter="bench-r.deadletter", topic_runs="bench-r.runs",
                            store="rocksdb://")
            ensure_topics(rs)
            r = Worker(rs, workdir, "worker-rocksdb")
            total = scale.visits + scale.latency_visits
            ingest_r = wait_for(r.ingest, total, 1800,
                                "rocksdb roster ingest", r.alive)
            result["roster_ingest_visits_per_s_rocksdb"] = round(ingest_r.rate)
            result["rss_mb_rocksdb_roster_at_ready"] = round(rss_mb(r.proc.p.pid), 1)
            result["rss_mb_rocksdb_roster"] = settled_rss_mb(r.proc.p.pid)
            r.proc.stop()

        log("client limit and Faust floor")
        for per, n in ((100, scale.batched_events), (1, scale.single_events)):
            result[f"client_limit_events_per_s_{per}"] = round(
                client_limit(bootstrap, f"bench.raw.{per}", n))
            result[f"faust_floor_events_per_s_{per}"] = round(
                faust_floor(bootstrap, f"bench.raw.{per}", per, n, workdir))
        # The same bare agent with the worker's monitor: what Faust costs the worker itself.
        result["faust_floor_quiet_events_per_s_1"] = round(
            faust_floor(bootstrap, "bench.raw.1", 1, scale.single_events, workdir, quiet=True))

        log("the input lanes side by side")
        result["lanes"] = lanes_side_by_side(base, scale, far, workdir)

        log("visit records off and on side by side")
        from benchmarks import records

        result["records"] = records.side_by_side(
            base, scale.lane_visits, workdir, rounds=1, log=log,
            broker_pid=broker.process.pid if broker.process else None)

        log("idiomatic Faust baseline")
        result["baseline"] = baseline(bootstrap, scale, far, workdir)

    log(f"sweeping {scale.sweep_visits:,} visits in process")
    result["sweep"] = sweep_benchmark(scale.sweep_visits, base.partitions)
    b = result["baseline"]
    result["ratios"] = {
        "events_100_vs_client_limit": _ratio(result["events_per_s_100"],
                                             result["client_limit_events_per_s_100"]),
        "events_100_vs_baseline": _ratio(result["events_per_s_100"], b["events_per_s_100"]),
        "events_1_vs_faust_floor": _ratio(result["events_per_s_1"],
                                          result["faust_floor_events_per_s_1"]),
        "events_1_vs_faust_floor_quiet": _ratio(result["events_per_s_1"],
                                                result["faust_floor_quiet_events_per_s_1"]),
        "events_1_vs_baseline": _ratio(result["events_per_s_1"], b["events_per_s_1"]),
        "events_100_keyed_vs_unkeyed": _ratio(result["events_per_s_100"],
                                              result["events_per_s_100_unkeyed"]),
        "events_1_keyed_vs_unkeyed": _ratio(result["events_per_s_1"],
                                            result["events_per_s_1_unkeyed"]),
        "roster_vs_baseline": _ratio(result["roster_ingest_visits_per_s"],
                                     b["roster_visits_per_s"]),
        "storm_100_vs_quiet": _ratio(result["events_per_s_storm_100"],
                                     result["events_per_s_100"]),
        "storm_1_vs_quiet": _ratio(result["events_per_s_storm_1"], result["events_per_s_1"]),
        "storm_100_unkeyed_vs_quiet": _ratio(result["events_per_s_storm_100_unkeyed"],
                                             result["events_per_s_100_unkeyed"]),
        "storm_1_unkeyed_vs_quiet": _ratio(result["events_per_s_storm_1_unkeyed"],
                                           result["events_per_s_1_unkeyed"]),
        "outage_backlog_vs_quiet": _ratio(result["outage_backlog_events_per_s"],
                                          result["events_per_s_100"]),
    }
    return result


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("inf")


def check_escalations(records: list[tuple[float, dict[str, Any]]], checked_in: int,
                      deadlines: dict[str, float], streamed_from: int,
                      stormed: int = 0, outage: dict[str, float] | None = None,
                      restarted: float = 0.0) -> dict[str, Any]:
    """Compare the escalation topic with what the workload must raise (the storm's
    check-ins, at visits ``0`` to ``stormed``, one location_mismatch each; the deadlines
    that fell due during the outage, one late each, published after ``restarted``).

    Event-triggered latency is taken over the check-ins streamed live (from visit
    ``streamed_from`` on), not over the backlogs produced while the worker was paused.
    """
    opened = [(t, r) for t, r in records if lifecycle(r) == "open"]
    ids = Counter(r["escalation_id"] for _, r in opened)
    expected = {f"bv{i}:location_mismatch" for i in range(checked_in)
                if wl.wrong_place(i) or i < stormed}
    expected |= {f"{vid}:late" for vid in deadlines}
    expected |= {f"{vid}:late" for vid in outage or {}}
    got = set(ids)
    late = [(r["visit_id"], t - deadlines[r["visit_id"]]) for t, r in opened
            if r["kind"] == "late" and r["visit_id"] in deadlines]
    timer_latency = [s for vid, s in late if not vid.startswith("sv")]
    storm_latency = [s for vid, s in late if vid.startswith("sv")]
    event_latency = []
    for t, r in opened:
        if r["kind"] == "location_mismatch" and int(r["visit_id"][2:]) >= streamed_from:
            occurred = parse_instant(r["deadline"])
            if occurred is not None:
                event_latency.append(t - occurred)
    return {
        "escalations_expected": len(expected), "escalations_opened": len(opened),
        "escalations_missing": len(expected - got), "escalations_false": len(got - expected),
        "escalations_missing_sample": sorted(expected - got)[:5],
        "escalations_false_sample": sorted(got - expected)[:5],
        "escalations_duplicate": sum(n - 1 for n in ids.values() if n > 1),
        "latency_timer_s": percentiles(timer_latency),
        "latency_timer_storm_s": percentiles(storm_latency),
        # Each deadline that fell due during the outage: from the restart to its publication.
        "outage_raised_after_restart_s": percentiles(
            [t - restarted for t, r in opened if r["kind"] == "late"
             and r["visit_id"] in (outage or {})]),
        "latency_event_s": percentiles(event_latency),
    }


TARGETS = [
    ("roster_ingest_visits_per_s", ">=", 100_000),
    ("events_per_s_100", ">=", 100_000),
    ("ratios.events_1_vs_faust_floor", ">=", 0.9),
    ("ratios.events_1_vs_baseline", ">=", 10),
    ("latency_timer_s.p99", "<=", 1.0),
    ("latency_timer_s.max", "<=", 2.0),
    ("latency_timer_storm_s.p99", "<=", 2.0),
    ("ratios.outage_backlog_vs_quiet", ">=", 0.5),
    ("sweep.sweep_1000_due_ms", "<=", 20.0),
    ("rss_mb_memory_after_latency", "<=", 1536),
    ("rss_mb_rocksdb_roster", "<=", 1536),
    ("ratios.storm_100_vs_quiet", ">=", 0.5),
    ("events_per_s_storm_100", ">=", 40_000),
    ("escalations_missing", "<=", 0),
    ("escalations_false", "<=", 0),
    ("escalations_duplicate", "<=", 0),
    ("records.quiet_on_vs_off", ">=", 0.9),
    ("records.records_wrong", "<=", 0),
]


def _get(result: dict[str, Any], path: str) -> Any:
    value: Any = result
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def table(result: dict[str, Any]) -> str:
    rows = [("figure", "measured", "target", "")]
    for path, op, target in TARGETS:
        value = _get(result, path)
        if value is None:
            rows.append((path, "-", f"{op} {target:,}", "not measured"))
            continue
        ok = value >= target if op == ">=" else value <= target
        rows.append((path, f"{value:,}", f"{op} {target:,}", "met" if ok else "MISSED"))
    for key in ("roster_ready_after_start_s", "client_limit_events_per_s_100",
                "client_limit_events_per_s_1", "faust_floor_events_per_s_100",
                "faust_floor_events_per_s_1", "faust_floor_quiet_events_per_s_1",
                "events_per_s_1", "events_per_s_100_unkeyed", "events_per_s_1_unkeyed",
                "events_per_s_storm_1", "events_per_s_storm_100_unkeyed",
                "events_per_s_storm_1_unkeyed",
                "latency_event_s",
                "sweep_worker_mean_ms", "rss_mb_memory_roster_at_ready", "rss_mb_memory_roster",
                "rss_mb_memory_after_events", "rss_mb_rocksdb_roster_at_ready",
                "roster_ingest_visits_per_s_rocksdb",
                "lanes", "records", "baseline", "ratios", "sweep"):
        if key in result:
            rows.append((key, json.dumps(result[key]) if isinstance(result[key], dict)
                         else f"{result[key]:,}", "", ""))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b:>14}  {c:>12}  {d}" if len(b) < 40
                     else f"{a:<{width}}  {b}" for a, b, c, d in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=sorted(SCALES), default="full")
    p.add_argument("--out", type=Path, help="also write the JSON result here")
    p.add_argument("--keep", action="store_true", help="keep the worker logs")
    p.add_argument("--runs", action="store_true",
                   help="the workers with worker runs on (ECM_RUNS), to compare with a "
                        "run without")
    p.add_argument("--profile", action="store_true",
                   help="sample the worker with py-spy during the event phases "
                        "(pip install -e '.[bench]')")
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="ecm-bench-"))
    try:
        result = run(SCALES[args.scale], workdir, log=lambda s: print(s, flush=True),
                     profile=args.profile, runs=args.runs)
        result["command"] = "python -m benchmarks.pipeline " + " ".join(argv or sys.argv[1:])
        print(table(result))
        line = json.dumps(result)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(line + "\n")
        print(line)
    finally:
        if args.keep:
            print(f"logs in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
