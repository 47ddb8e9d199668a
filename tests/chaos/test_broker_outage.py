"""The broker out of reach, and slow, in the middle of a compressed simulated morning, the
region's gateways still sending; graded by the simulator's ledger.

Two outages: 30 s, within the consumer group's session timeout (set to 45 s here, so the
group keeps its members), then 90 s, beyond it. The workers report not ready on /readyz
while cut off, a real Prometheus evaluating the project's alert rules fires
``EcmBrokerUnreachable`` for each, they never exit, and when the broker is back they read
the backlog and carry on by themselves. Then a slow broker: 200 ms added to every response
the workers get, all morning. The scorer finds nothing missing, nothing spurious, nothing
doubled. docs/operating.md, "Failure scenarios", has the scores of three runs in a row.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.run import simulate
from simulator.scenario import Rates, SimConfig
from stream.broker import EmbeddedBroker, free_port
from stream.clock import ScaledClock
from stream.settings import Settings
from stream.topics import ensure_topics
from tests.chaos.proxy import FaultProxy
from tests.cluster import WorkerProcess
from tests.prom import Prometheus

pytestmark = pytest.mark.integration

# (seconds after the workers are ready, seconds cut off)
CUTS = ((40.0, 30.0), (110.0, 90.0))
SESSION_TIMEOUT_S = 45.0
ALERT = "EcmBrokerUnreachable"


def _ready(port: int) -> bool | None:
    """The worker's readiness; None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return bool(json.loads(r.read())["ready"])
    except urllib.error.HTTPError as e:
        return bool(json.loads(e.read())["ready"])
    except OSError:
        return None


class Outages:
    """Cuts the workers off on a schedule, from when they are ready, and watches their
    readiness and what a Prometheus evaluating the alert rules says, per cut."""

    def __init__(self, proxy: FaultProxy, cuts: tuple[tuple[float, float], ...],
                 workdir: Path) -> None:
        self.proxy = proxy
        self.cuts = cuts
        self.workdir = workdir
        n = len(cuts)
        self.not_ready_during: list[set[int]] = [set() for _ in range(n)]
        self.answered_during: list[set[int]] = [set() for _ in range(n)]
        self.ready_after: list[set[int]] = [set() for _ in range(n)]
        self.firing_during: list[set[str]] = [set() for _ in range(n)]
        self.firing_at_end: set[str] = set()
        self.thread: threading.Thread | None = None

    def begin(self, ports: list[int], clock: ScaledClock) -> None:
        self.ports = ports
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _firing(self, prom: Prometheus) -> set[str]:
        try:
            return {instance for name, state, instance in prom.alerts()
                    if name == ALERT and state == "firing"}
        except OSError:
            return set()

    def _run(self) -> None:
        with Prometheus(self.workdir, self.ports, rules=True) as prom:
            started = time.monotonic()
            for k, (after, length) in enumerate(self.cuts):
                time.sleep(max(0.0, started + after - time.monotonic()))
                self.proxy.cut()
                cut_at = time.monotonic()
                while time.monotonic() < cut_at + length:
                    for port in self.ports:
                        state = _ready(port)
                        if state is not None:
                            self.answered_during[k].add(port)
                        if state is False:
                            self.not_ready_during[k].add(port)
                    self.firing_during[k] |= self._firing(prom)
                    time.sleep(1.0)
                self.proxy.restore()
                back = time.monotonic()
                while time.monotonic() < back + 90 and len(self.ready_after[k]) < len(self.ports):
                    for port in self.ports:
                        if _ready(port):
                            self.ready_after[k].add(port)
                    time.sleep(0.5)
            time.sleep(5)  # the rule is evaluated every second; resolved once reachable
            self.firing_at_end = self._firing(prom)


@contextlib.contextmanager
def _behind_a_proxy(tag: str, partitions: int) -> Iterator[tuple[FaultProxy, Settings]]:
    """A broker whose clients all connect through a fault proxy, and settings for it. The
    proxy cuts the workers' clients (aiokafka, Faust), not the simulator's (kafka-python):
    the region goes on sending while the workers cannot read."""
    listen, advertised = free_port(), free_port()
    with EmbeddedBroker(listen, advertised_port=advertised) as broker:
        proxy = FaultProxy(advertised, listen,
                           lambda client: not client.startswith("kafka-python")).start()
        try:
            yield proxy, Settings(
                broker=broker.bootstrap, app_id=f"ecm-{tag}", partitions=partitions,
                topic_roster=f"{tag}.roster", topic_events=f"{tag}.events",
                topic_escalations=f"{tag}.escalations", topic_deadletter=f"{tag}.deadletter",
                topic_visits=f"{tag}.visits",
                topic_work=f"{tag}.work", topic_state=f"{tag}.state",
                topic_actions=f"{tag}.actions",
                unscheduled_grace_s=120.0)
        finally:
            proxy.stop()


def _exact(report: dict) -> None:
    for kind, k in report["kinds"].items():
        assert (k["missing"], k["spurious"], k["duplicates"]) == (0, 0, 0), (kind, k)
    assert report["kinds"]["late"]["expected"] >= 5 and report["kinds"]["missed"]["expected"] >= 5


def test_two_outages_within_and_beyond_the_session_timeout_lose_and_double_nothing(tmp_path):
    with _behind_a_proxy("outage", 4) as (proxy, settings):
        # No duty desk: it acts on a schedule that assumes each escalation was raised
        # within its guard band, which an outage delays (unknown_escalation).
        config = SimConfig(seed=29, clients=800, workers=100, start_hour=7.0, hours=2.0,
                           speed=30.0, batch_size=50, desk=False,
                           rates=Rates(delay=0.05, missed=0.05, offline=0.03,
                                       duplicate=0.02, malformed_per_hour=6.0))
        outages = Outages(proxy, CUTS, tmp_path)
        report = simulate(config, settings.with_(session_timeout_s=SESSION_TIMEOUT_S),
                          ledger_path=tmp_path / "ledger.json", worker_procs=2,
                          workdir=tmp_path, on_ready=outages.begin)
        assert outages.thread is not None
        outages.thread.join(300)
    assert proxy.severed > 0
    ports = set(outages.ports)
    instances = {f"127.0.0.1:{p}" for p in ports}
    for k in range(len(CUTS)):
        # Alive and answering all along, not ready while cut off, ready again by themselves.
        assert outages.answered_during[k] == ports and outages.not_ready_during[k] == ports, k
        assert outages.ready_after[k] == ports, k
    # The alert waits a minute: it fires for the long outage only, and resolves after it.
    assert outages.firing_during[0] == set(), outages.firing_during
    assert outages.firing_during[1] == instances, outages.firing_during
    assert outages.firing_at_end == set()
    _exact(report)
    logs = "".join(p.read_text() for p in tmp_path.glob("worker-*.log"))
    assert "the broker is out of reach" in logs and "within reach again" in logs


def test_a_slow_broker_delays_but_loses_and_doubles_nothing(tmp_path):
    with _behind_a_proxy("slow", 4) as (proxy, settings):
        config = SimConfig(seed=31, clients=800, workers=100, start_hour=7.0, hours=1.0,
                           speed=30.0, batch_size=50,
                           rates=Rates(delay=0.05, missed=0.05, offline=0.03,
                                       duplicate=0.02, malformed_per_hour=6.0))

        def slow(ports: list[int], clock: ScaledClock) -> None:
            proxy.delay_s = 0.2

        report = simulate(config, settings, ledger_path=tmp_path / "ledger.json",
                          worker_procs=2, workdir=tmp_path, on_ready=slow)
    _exact(report)
    print(json.dumps({k: {m: v[m] for m in ("expected", "latency_p50_wall_s",
                                            "latency_p95_wall_s")}
                      for k, v in report["kinds"].items()}))


def test_a_worker_cut_off_from_the_broker_stops_within_ten_seconds(tmp_path):
    with _behind_a_proxy("stop", 2) as (proxy, settings):
        ensure_topics(settings)
        worker = WorkerProcess(settings, tmp_path, "w").start()
        try:
            worker.wait_ready()
            proxy.cut()
            deadline = time.monotonic() + 30
            while _ready(worker.settings.web_port) is not False:
                assert time.monotonic() < deadline, "still ready while cut off"
                time.sleep(0.5)
            assert worker.process is not None
            asked = time.monotonic()
            worker.process.terminate()
            worker.process.wait(30)
            assert time.monotonic() - asked <= 10.0, worker.log()[-3000:]
        finally:
            worker.kill()
