"""A real Prometheus server (Debian's package) for the tests: it scrapes given workers every
second and, where asked, evaluates the project's own alert rules (deploy/prometheus)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from stream.broker import free_port, port_open

RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "alerts.yml"


class Prometheus:
    def __init__(self, workdir: Path, targets: list[int], *, rules: bool = False) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus not found: `make test` installs Debian's prometheus package"
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.log = workdir / "prometheus.log"
        listed = ", ".join(f"'127.0.0.1:{p}'" for p in targets)
        config = ("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                  + (f"rule_files: ['{RULES}']\n" if rules else "")
                  + "scrape_configs:\n  - job_name: ecm-worker\n"
                  f"    static_configs: [{{targets: [{listed}]}}]\n")
        self.config = workdir / "prometheus.yml"
        self.config.write_text(config)
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prometheus:
        self.process = subprocess.Popen(
            [self.binary, f"--config.file={self.config}",
             f"--storage.tsdb.path={self.workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not port_open(self.port):
            assert self.process.poll() is None and time.monotonic() < deadline, self.tail()
            time.sleep(0.1)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(20)

    def tail(self) -> str:
        return self.log.read_text()[-2000:] if self.log.exists() else ""

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return json.loads(r.read())["data"]

    def query(self, promql: str) -> float | None:
        """The value of a query that gives one series, or None."""
        data = self._get(f"/api/v1/query?query={urllib.parse.quote(promql)}")["result"]
        return float(data[0]["value"][1]) if data else None

    def alerts(self) -> list[tuple[str, str, str]]:
        """The alerts pending or firing: (name, state, instance)."""
        return [(a["labels"]["alertname"], a["state"], a["labels"].get("instance", ""))
                for a in self._get("/api/v1/alerts")["alerts"]]
