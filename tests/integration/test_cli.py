"""The ``ecm`` command's broker and topics sub-commands, as a user runs them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from stream.broker import free_port
from tests.cluster import ROOT

pytestmark = pytest.mark.integration


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_broker_starts_and_stops_on_sigterm():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "broker", "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not _listening(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _listening(port)
        env = {**os.environ, "ECM_BROKER": f"127.0.0.1:{port}", "ECM_PARTITIONS": "2"}
        out = subprocess.run([sys.executable, "-m", "stream.cli", "topics"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "ecm.escalations" in out.stdout, out
        again = subprocess.run([sys.executable, "-m", "stream.cli", "topics"], cwd=ROOT,
                               env=env, capture_output=True, text=True, timeout=60)
        assert "nothing, all present" in again.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert not _listening(port)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_worker_logs_json_lines_when_asked(spawn_worker):
    import orjson

    w = spawn_worker("json", log_format="json")
    w.wait_ready()
    w.stop()
    lines = [line for line in w.log().splitlines() if line.strip()]
    docs = [orjson.loads(line) for line in lines if line.startswith("{")]
    # Every log record is one JSON object; only Faust's start-up banner is not a record.
    assert len(docs) >= 10 and len(docs) >= 0.8 * len(lines), lines[:20]
    assert any("Ready" in d["message"] for d in docs)
    assert all({"ts", "level", "logger", "message"} <= d.keys() for d in docs)
