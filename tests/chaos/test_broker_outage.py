"""The workers cut off from the broker for 60 s in the middle of a compressed simulated
morning, the region's gateways still sending: the workers report not ready, hold their
deadlines, never exit, and when the broker is back they read the backlog and carry on. The
scorer, from the simulator's ledger, finds nothing missing, nothing spurious, nothing
doubled."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from simulator.run import simulate
from simulator.scenario import Rates, SimConfig
from stream.broker import EmbeddedBroker, free_port
from stream.clock import ScaledClock
from stream.settings import Settings
from stream.topics import ensure_topics
from tests.chaos.proxy import FaultProxy
from tests.cluster import WorkerProcess

pytestmark = pytest.mark.integration

CUT_S = 60.0


def _ready(port: int) -> bool | None:
    """The worker's readiness; None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return bool(json.loads(r.read())["ready"])
    except urllib.error.HTTPError as e:
        return bool(json.loads(e.read())["ready"])
    except OSError:
        return None


class Outage:
    """Cuts the workers off at a given instant of the run and watches their readiness."""

    def __init__(self, proxy: FaultProxy, start_after_s: float) -> None:
        self.proxy = proxy
        self.start_after_s = start_after_s
        self.not_ready_during: set[int] = set()
        self.answered_during: set[int] = set()
        self.ready_after: set[int] = set()
        self.thread: threading.Thread | None = None

    def begin(self, ports: list[int], clock: ScaledClock) -> None:
        self.ports = ports
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        time.sleep(self.start_after_s)
        self.proxy.cut()
        cut_at = time.monotonic()
        while time.monotonic() < cut_at + CUT_S:
            for port in self.ports:
                state = _ready(port)
                if state is not None:
                    self.answered_during.add(port)
                if state is False:
                    self.not_ready_during.add(port)
            time.sleep(1.0)
        self.proxy.restore()
        back = time.monotonic()
        while time.monotonic() < back + 90 and len(self.ready_after) < len(self.ports):
            for port in self.ports:
                if _ready(port):
                    self.ready_after.add(port)
            time.sleep(0.5)


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


def test_workers_cut_off_from_the_broker_for_a_minute_lose_and_double_nothing(tmp_path):
    with _behind_a_proxy("outage", 4) as (proxy, settings):
        # No duty desk: it acts on a schedule that assumes each escalation was raised
        # within its guard band, which the outage delays (unknown_escalation).
        config = SimConfig(seed=29, clients=800, workers=100, start_hour=7.0, hours=1.5,
                           speed=30.0, batch_size=50, desk=False,
                           rates=Rates(delay=0.05, missed=0.05, offline=0.03,
                                       duplicate=0.02, malformed_per_hour=6.0))
        outage = Outage(proxy, start_after_s=40.0)
        report = simulate(config, settings, ledger_path=tmp_path / "ledger.json",
                          worker_procs=2, workdir=tmp_path, on_ready=outage.begin)
        assert outage.thread is not None
        outage.thread.join(120)
    assert proxy.severed > 0
    ports = set(outage.ports)
    # Alive and answering all along, not ready while cut off, ready again by themselves.
    assert outage.answered_during == ports and outage.not_ready_during == ports
    assert outage.ready_after == ports
    for kind, k in report["kinds"].items():
        assert (k["missing"], k["spurious"], k["duplicates"]) == (0, 0, 0), (kind, k)
    assert report["kinds"]["late"]["expected"] >= 5 and report["kinds"]["missed"]["expected"] >= 5
    logs = "".join(p.read_text() for p in tmp_path.glob("worker-*.log"))
    assert "the broker is out of reach" in logs and "within reach again" in logs


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
