"""Poisoned state under the kill -9 rotation: while a compressed simulated morning is played,
records no worker wrote (not JSON, JSON of another shape, a truncated changelog document, an
escalation record of the wrong type or cut short) land in every partition of ``ecm.state``
and ``ecm.escalations`` every few seconds, and a worker is SIGKILLed and restarted every 15
to 25 s, so that partitions are rebuilt through the poison again and again. No rebuild
crash-loops; every poisoned record is skipped, logged and counted; and the scorer finds
nothing missing, nothing spurious, nothing doubled against the ledger.

The loader's own tests (tests/integration/test_poisoned_state.py) cover what is recovered
when a real record is corrupted instead: a truncated checkpoint slice, a lost delta."""

from __future__ import annotations

import re
import threading

import pytest
from kafka import KafkaProducer

from simulator.run import Worker, simulate
from simulator.scenario import SimConfig
from simulator.score import format_report
from stream.clock import ScaledClock
from stream.security import connection
from stream.settings import Settings
from tests.chaos.rotation import EVERYTHING, MIXED_STORES, Rotation
from tests.chaos.test_rotation import findings

pytestmark = pytest.mark.integration

SEED = 23
STATE_POISON = (b"\xff not json", b"[1, 2, 3]", b'{"p": 0, "visits": "nope"}',
                b'{"p": 0, "visits": [{"id": "v-x", "s": ["v-x", "c-x", ["w"], 17')
ESCALATION_POISON = (b'{"escalation_id": 7}', b'{"escalation_id": "v-x:late", "kind": "la')


class Poison:
    """Writes the poison to every partition every ``every_s`` wall seconds while the
    rotation kills; a ``simulator.run.Fault``."""

    def __init__(self, settings: Settings, rotation: Rotation, every_s: float = 8.0) -> None:
        self.settings = settings
        self.rotation = rotation
        self.every_s = every_s
        self.rounds = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def begin(self, workers: list[Worker], clock: ScaledClock) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.rotation.begin(workers, clock)

    def end(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.rotation.end()

    def _run(self) -> None:
        s = self.settings
        producer = KafkaProducer(**connection(s))
        try:
            while not self._stop.wait(self.every_s):
                for p in range(s.partitions):
                    for value in STATE_POISON:
                        producer.send(s.topic_state, value, partition=p)
                    for value in ESCALATION_POISON:
                        producer.send(s.topic_escalations, value, partition=p)
                producer.flush()
                self.rounds += 1
        finally:
            producer.close()


def test_poisoned_state_under_the_kill_rotation_loses_and_doubles_nothing(broker, tmp_path):
    tag = "poison"
    settings = Settings(broker=broker, app_id=f"ecm-{tag}", partitions=6,
                        topic_roster=f"{tag}.roster", topic_events=f"{tag}.events",
                        topic_escalations=f"{tag}.escalations", topic_visits=f"{tag}.visits",
                        topic_deadletter=f"{tag}.deadletter", topic_work=f"{tag}.work",
                        topic_state=f"{tag}.state", topic_actions=f"{tag}.actions",
                        unscheduled_grace_s=120.0)
    config = SimConfig(seed=SEED, clients=1000, workers=120, start_hour=7.0, hours=1.5,
                       speed=40.0, batch_size=50, rates=EVERYTHING, desk=False)
    rotation = Rotation(seed=SEED, every_s=(15.0, 25.0))
    poison = Poison(settings, rotation)
    report = simulate(config, settings, ledger_path=tmp_path / "ledger.json",
                      worker_procs=len(MIXED_STORES), workdir=tmp_path,
                      worker_changes=MIXED_STORES, fault=poison)
    wrong = findings(report, rotation, min_kills=3)
    assert not wrong, "\n".join([*wrong, "", format_report(report), "", rotation.describe()])
    assert poison.rounds >= 5
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("worker-*.log"))
    skipped = re.findall(r"skipped \S+\.(state|escalations) at offset \d+ while rebuilding",
                         logs)
    assert {"state", "escalations"} <= set(skipped), logs[-3000:]
    assert "record(s) lost" in logs or "record(s) unreadable" in logs
