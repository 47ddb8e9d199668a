"""By default the worker's web server and the desk listen on loopback only, and the desk
lets nobody read or act before signing in."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stream.broker import free_port

pytestmark = pytest.mark.integration


def _listening(port: int) -> set[str]:
    """The local addresses something listens on at ``port`` (IPv4 and IPv6)."""
    out = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not Path(table).exists():
            continue
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                out.add("127.0.0.1" if address == "0100007F" else
                        "0.0.0.0" if address == "0" * width else address)
    return out


def _status(url: str, data: bytes | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_the_worker_and_the_desk_listen_on_loopback_and_the_desk_asks_to_sign_in(
        settings, spawn_worker, tmp_path):
    worker = spawn_worker("w")
    worker.wait_ready()
    assert _listening(worker.settings.web_port) == {"127.0.0.1"}
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECM_")}
    env.update({**settings.as_env(), "ECM_DESK_PORT": str(port),
                "ECM_DESK_TOKENS": "ann:ann-secret-token"})
    env.pop("ECM_DESK_HOST")  # the default
    log = tmp_path / "desk.log"
    desk = subprocess.Popen([sys.executable, "-m", "stream.cli", "desk"], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not (_listening(port) and _status(url + "/healthz") == 200):
            assert desk.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        assert _listening(port) == {"127.0.0.1"}
        # Nothing but the sign-in page, its static files and the health check before signing in.
        opener = urllib.request.build_opener(_NoRedirect())
        with pytest.raises(urllib.error.HTTPError) as found:
            opener.open(url + "/", timeout=5)
        assert found.value.code == 302 and found.value.headers["Location"] == "/login"
        for path in ("/events", "/closed", "/case/v1:late", "/act/v1:late"):
            assert _status(url + path) == 401, path
        assert _status(url + "/actions", data=b"escalation_id=v1:late") == 401
        assert _status(url + "/login") == 200
        assert "ann-secret-token" not in log.read_text()
    finally:
        desk.terminate()
        desk.wait(10)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
