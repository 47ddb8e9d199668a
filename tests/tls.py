"""TLS in front of the embedded broker, for the tests: Debian's stunnel terminates TLS and
forwards the plain Kafka protocol to the broker, which advertises stunnel's port, so every
connection a client makes (bootstrap and then the partition leader) goes through TLS.

The embedded broker's own ``--cert``/``--key`` cannot serve TLS: Tansu 0.6.0 puts the two
options in one argument group (it refuses them together, and needs both), and its accept
loop never uses the TLS acceptor it builds (docs/operating.md, "Security").
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import trustme

from stream.broker import port_open


@dataclass(frozen=True)
class Certificates:
    """A CA made for the test, the server's certificate (for 127.0.0.1 and localhost) and
    a client's, as PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def make(cls, directory: Path) -> Certificates:
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        client = ca.issue_cert("ecm-worker")
        paths = cls(*(directory / n for n in ("ca.pem", "server.pem", "server.key",
                                              "client.pem", "client.key")))
        ca.cert_pem.write_to_path(str(paths.ca))
        server.cert_chain_pems[0].write_to_path(str(paths.server_cert))
        server.private_key_pem.write_to_path(str(paths.server_key))
        client.cert_chain_pems[0].write_to_path(str(paths.client_cert))
        client.private_key_pem.write_to_path(str(paths.client_key))
        return paths


def stunnel_binary() -> str:
    found = shutil.which("stunnel4") or shutil.which("stunnel")
    if found is None:  # a failure, not a skip: `make test` installs Debian's stunnel4
        raise RuntimeError("stunnel is not installed (Debian's stunnel4; `make test` "
                           "installs it)")
    return found


class Stunnel:
    """TLS on 127.0.0.1:accept, forwarded to 127.0.0.1:connect; with ``client_ca``, a
    client must present a certificate that CA signed (mutual TLS)."""

    def __init__(self, accept: int, connect: int, certs: Certificates, workdir: Path,
                 *, mutual: bool = True) -> None:
        self.accept = accept
        self.log = workdir / "stunnel.log"
        self.conf = workdir / "stunnel.conf"
        lines = ["foreground = yes", "pid =", f"output = {self.log}", "[kafka]",
                 f"accept = 127.0.0.1:{accept}", f"connect = 127.0.0.1:{connect}",
                 f"cert = {certs.server_cert}", f"key = {certs.server_key}"]
        if mutual:
            lines += [f"CAfile = {certs.ca}", "verifyChain = yes", "requireCert = yes"]
        self.conf.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Stunnel:
        self.process = subprocess.Popen([stunnel_binary(), str(self.conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not port_open(self.accept):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"stunnel did not start: {self.log.read_text()[-2000:]}"
                                   if self.log.exists() else "stunnel did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)

    def connections(self) -> int:
        """TLS connections stunnel accepted and passed on to the broker."""
        return self.log.read_text().count("connected remote server") if self.log.exists() else 0
