"""A real Prometheus server scrapes a real worker; PromQL counts what the topic holds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.cluster import Reader, produce
from tests.factories import event, north_of_home, visit
from tests.prom import Prometheus

pytestmark = pytest.mark.integration


def test_prometheus_counts_the_escalations_on_the_topic(settings, spawn_worker, tmp_path: Path):
    worker = spawn_worker("w-metrics")
    worker.wait_ready()
    reader = Reader(settings, settings.topic_escalations)
    with Prometheus(tmp_path, [worker.settings.web_port]) as prom:
        try:
            now = time.time()
            fast = {"late_after_s": 2, "missed_after_s": 8, "no_checkout_after_s": 3600}
            far = north_of_home(1500)
            produce(settings, settings.topic_roster, [[
                visit(f"v{i}", client_id=f"c{i}", start=now, **fast) for i in range(10)]])
            produce(settings, settings.topic_events, [
                [event(at=now, visit_id="v0", client_id="c0"),
                 event(at=now, visit_id="v1", client_id="c1", lat=far[0], lon=far[1]),
                 event(at=now, visit_id="v2", client_id="c2", method="telephony",
                       caller_number="000")],
                b"not json"])
            time.sleep(3)
            produce(settings, settings.topic_events, [event(at=time.time(), visit_id="v3",
                                                            client_id="c3")])
            # 6 unattended visits raise late and missed (12); v3 raises late and resolves it (2);
            # v1 location_mismatch and v2 location_unverified (2).
            reader.until(lambda r: len(r.records[settings.topic_escalations]) >= 16, timeout_s=60,
                         quiet_s=3)
            on_topic = len(reader.records[settings.topic_escalations])
            assert on_topic == 16
            promql = ("sum(ecm_escalations_raised_total{job='ecm-worker'})"
                      " + sum(ecm_escalations_resolved_total{job='ecm-worker'})")
            deadline = time.monotonic() + 60
            got = None
            while time.monotonic() < deadline:
                try:
                    got = prom.query(promql)
                except OSError:
                    got = None
                if got == on_topic:
                    break
                time.sleep(1)
            assert got == on_topic, (got, on_topic, prom.tail())
            assert prom.query("sum(ecm_deadletters_total{reason='invalid_json'})") == 1
            assert prom.query("sum(ecm_escalations_open{kind='missed'})") == 6
        finally:
            reader.close()
