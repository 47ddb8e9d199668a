"""Real processes for integration tests: the embedded broker, workers, producers, readers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer

from simulator.run import kill, stop
from stream.broker import free_port
from stream.security import connection
from stream.settings import Settings
from tests.factories import event, visit

_READY_MARK = "[^Worker]: Ready"
ROOT = Path(__file__).resolve().parents[1]


class WorkerProcess:
    """``ecm worker`` in its own process, with its own web port, data dir and log."""

    def __init__(self, settings: Settings, workdir: Path, name: str,
                 datadir: str | None = None) -> None:
        self.settings = settings.with_(web_port=free_port(),
                                       datadir=datadir or str(workdir / name))
        self.log_path = workdir / f"{name}.log"
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = {**os.environ, **self.settings.as_env(), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker"], env=env, cwd=ROOT,
            stdout=self.log_path.open("w"), stderr=subprocess.STDOUT)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.log()[-4000:]}")
            if _READY_MARK in self.log():
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not ready in {timeout_s} s:\n{self.log()[-4000:]}")

    def kill(self) -> None:
        kill(self.process)

    def stop(self) -> None:
        stop(self.process)


def metric(port: int, series: str) -> float:
    """The value of one series, e.g. ``name{label="x"}``, from a worker's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def produce(settings: Settings, topic: str,
            values: Iterable[bytes | dict[str, Any] | list[Any]]) -> None:
    producer = KafkaProducer(**connection(settings))
    for v in values:
        producer.send(topic, v if isinstance(v, bytes) else orjson.dumps(v))
    producer.flush()
    producer.close()


def send_batches(bootstrap: str, topic: str, sizes: Iterable[int], partition: int) -> None:
    """Records sent as one producer batch of each size in turn: the embedded broker
    reports the base offset of a partition's last batch, plus one, as its end."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=500, batch_size=1 << 20)
    for n in sizes:
        for _ in range(n):
            producer.send(topic, b"{}", partition=partition)
        producer.flush()
    producer.close()


class Reader:
    """Everything published to some topics since the start, read as it comes."""

    def __init__(self, settings: Settings, *topics: str) -> None:
        self.consumer = KafkaConsumer(*topics, **connection(settings),
                                      auto_offset_reset="earliest", enable_auto_commit=False,
                                      group_id=None, consumer_timeout_ms=200)
        self.records: dict[str, list[dict[str, Any]]] = {t: [] for t in topics}
        self.arrived: list[float] = []

    def poll(self) -> None:
        for m in self.consumer:
            self.records[m.topic].append(orjson.loads(m.value))
            self.arrived.append(time.time())

    def until(self, done: Callable[[Reader], bool], timeout_s: float, quiet_s: float = 0.0) -> None:
        """Read until ``done`` holds, then ``quiet_s`` more (to catch anything extra)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll()
            if done(self):
                end = time.monotonic() + quiet_s
                while time.monotonic() < end:
                    self.poll()
                return
        raise AssertionError(f"timed out; read {[(t, len(r)) for t, r in self.records.items()]}")

    def close(self) -> None:
        self.consumer.close()


def missed_visit_escalated(settings: Settings, worker: WorkerProcess) -> list[str]:
    """Roster a visit nobody attends and one attended on time, through ``settings``' own
    connection, and read back what the worker raised: the escalation ids, sorted."""
    worker.wait_ready()
    reader = Reader(settings, settings.topic_escalations)
    now = time.time()
    produce(settings, settings.topic_roster, [[
        visit("v-missed", client_id="c1", start=now, late_after_s=2, missed_after_s=4),
        visit("v-kept", client_id="c2", start=now, late_after_s=2, missed_after_s=4,
              no_checkout_after_s=3600)]])
    produce(settings, settings.topic_events, [[event("check_in", visit_id="v-kept",
                                                     client_id="c2", at=now)]])
    try:
        reader.until(lambda r: len(r.records[settings.topic_escalations]) >= 2, timeout_s=60,
                     quiet_s=3)
    finally:
        reader.close()
    return sorted(e["escalation_id"] for e in reader.records[settings.topic_escalations])
