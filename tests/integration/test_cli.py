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
