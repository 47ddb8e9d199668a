"""A real Prometheus server scrapes a real worker; PromQL counts what the topic holds."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from stream.broker import free_port
from tests.cluster import Reader, produce
from tests.factories import event, north_of_home, visit

pytestmark = pytest.mark.integration


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def _query(port: int, promql: str) -> float | None:
    q = urllib.parse.quote(promql)
    data = _get(f"http://127.0.0.1:{port}/api/v1/query?query={q}")["data"]["result"]
    return float(data[0]["value"][1]) if data else None


def test_prometheus_counts_the_escalations_on_the_topic(settings, spawn_worker, tmp_path: Path):
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus not found: `make test` installs Debian's prometheus package"
    worker = spawn_worker("w-metrics")
    worker.wait_ready()
    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: ecm-worker\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{worker.settings.web_port}']}}]\n")
    server = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=(tmp_path / "prometheus.log").open("w"), stderr=subprocess.STDOUT)
    reader = Reader(settings, settings.topic_escalations)
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
                got = _query(prom_port, promql)
            except OSError:
                got = None
            if got == on_topic:
                break
            time.sleep(1)
        assert got == on_topic, (got, on_topic, (tmp_path / "prometheus.log").read_text()[-2000:])
        assert _query(prom_port, "sum(ecm_deadletters_total{reason='invalid_json'})") == 1
        assert _query(prom_port, "sum(ecm_escalations_open{kind='missed'})") == 6
    finally:
        reader.close()
        server.terminate()
        server.wait(20)
