"""The duty desk's board under a storm: ``python -m benchmarks.desk``.

The escalations are real records: one partition's detector, in process, tracks ``--cases``
/ 2 visits that nobody attends, and its sweep raises their late and missed escalations,
each a case. They go onto ``ecm.escalations`` of the embedded broker, read by ``ecm desk``
in its own process, and a headless Chromium (Debian's, through selenium) shows the board.
Measured side by side, first with ``--quiet`` open cases, then with all of them:

* **server**: the desk's resident memory (VmRSS) before and after, per case; the time to
  read the records; and, in process, a render of the first page's rows (the work each
  change costs the server);
* **browser**: the page's load (navigation start to the load event), and while a storm of
  revisions is published (``--updates`` records, half acknowledged, a tenth resolved, at
  ``--rate`` a second), the longest task on the page's main thread (PerformanceObserver
  ``longtask``) and the longest delay of a 50 ms timer (what a click would wait), with the
  number of live updates the page took.

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import orjson

from benchmarks import workload as wl
from benchmarks.pipeline import machine
from stream.clock import ManualClock
from stream.contract import Codec, Source
from stream.rules.detector import PartitionDetector
from stream.settings import Settings

NOW = 1_800_000_000.0
_USER, _TOKEN = "bench", "bench-desk-token"
_encode = msgspec.json.Encoder().encode


def escalations(n: int) -> list[dict[str, Any]]:
    """``n`` open cases (late and missed of n / 2 visits), as the detector publishes them,
    the people's risk flags varied as a region's are."""
    settings = Settings(partitions=1)
    d = PartitionDetector(0, settings, ManualClock(NOW), Codec())
    roster = []
    for i, doc in enumerate(wl.roster(n // 2, NOW)):
        doc["risk_level"] = ("low", "medium", "medium", "high", "critical")[i % 5]
        doc["lives_alone"] = i % 3 == 0
        doc["time_critical"] = i % 7 == 0
        roster.append(("roster", doc, Source(settings.topic_roster, 0, i)))
    d.process(roster)
    d.clock.set(NOW + 3 * 3600)
    out = d.sweep()
    return [orjson.loads(_encode(r)) for r in out.escalations]


def revisions(records: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """A storm of changes: the next revision of ``n`` cases, acknowledged, every tenth
    resolved instead (it leaves the board)."""
    out = []
    for i, r in enumerate(records[:n]):
        nxt = {**r, "revision": r["revision"] + 1}
        if i % 10 == 0:
            nxt.update(status="resolved", resolved_at=r["detected_at"],
                       resolution="checked_in")
        else:
            case = dict(r["case"])
            case["owner"] = {"owner_id": f"duty-{i % 7}", "at": r["detected_at"]}
            nxt.update(status="acknowledged", case=case)
        out.append(nxt)
    return out


def _publish(settings: Settings, records: list[dict[str, Any]], rate: float = 0.0) -> float:
    """Send ``records`` to ``ecm.escalations`` keyed by id (at ``rate`` a second, or at
    once); the seconds it took."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5,
                             acks=1)
    began = time.monotonic()
    for k, r in enumerate(records):
        if rate:
            wait = began + k / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        producer.send(settings.topic_escalations, orjson.dumps(r),
                      key=r["escalation_id"].encode())
    producer.flush()
    producer.close()
    return time.monotonic() - began


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _render_ms(records: list[dict[str, Any]], settings: Settings) -> float:
    """The best of 20 renders of the first page's rows, in process, in milliseconds."""
    from stream.desk.auth import Users
    from stream.desk.board import Filters
    from stream.desk.server import Desk

    desk = Desk(settings, Users({_USER: _TOKEN}))
    for r in records:
        desk.board.apply(r)
    best = float("inf")
    for k in range(20):
        desk.board.version += 1  # a change: nothing held rendered
        t = time.perf_counter()
        desk._rows(Filters(page=k % 1))
        best = min(best, time.perf_counter() - t)
    return best * 1e3


class _Board:
    """``ecm desk`` in its own process, and a signed-in headless Chromium on it."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        from stream.broker import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **settings.as_env(), "ECM_DESK_PORT": str(self.port),
               "ECM_DESK_TOKENS": f"{_USER}:{_TOKEN}"}
        self.log = (workdir / "desk.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "desk"], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as resp:
                    if orjson.loads(resp.read()).get("read"):
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ecm desk did not start: see " + str(workdir / "desk.log"))
            time.sleep(0.2)
        self.driver = _chromium()
        self.driver.get(self.url + "/login")
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.ID, "user").send_keys(_USER)
        self.driver.find_element(By.ID, "token").send_keys(_TOKEN)
        self.driver.find_element(By.ID, "sign-in").click()
        self._until(lambda: self.driver.find_elements(By.ID, "rows"), 20)

    def open_total(self) -> int:
        from selenium.webdriver.common.by import By

        text = self.driver.find_element(By.ID, "total").text
        return int(text.split()[0])

    def wait_total(self, n: int, timeout_s: float) -> float:
        began = time.monotonic()
        self._until(lambda: self.open_total() == n, timeout_s)
        return time.monotonic() - began

    def load_ms(self) -> float:
        self.driver.get(self.url + "/")
        return float(self.driver.execute_script(
            "const t = performance.getEntriesByType('navigation')[0];"
            "return t.loadEventEnd - t.startTime;"))

    def watch(self) -> None:
        """Start noting the page's long tasks, the lag of a 50 ms timer, and live updates."""
        self.driver.execute_script("""
            window.benchLong = 0; window.benchLag = 0; window.benchUpdates = 0;
            new PerformanceObserver(l => { for (const e of l.getEntries())
                window.benchLong = Math.max(window.benchLong, e.duration); })
              .observe({type: 'longtask'});
            let last = performance.now();
            setInterval(() => { const now = performance.now();
                window.benchLag = Math.max(window.benchLag, now - last - 50); last = now; }, 50);
            document.body.addEventListener('htmx:sseMessage', () => window.benchUpdates++);
        """)

    def watched(self) -> dict[str, float]:
        return {"longest_task_ms": round(self.driver.execute_script(
                    "return window.benchLong"), 1),
                "timer_lag_max_ms": round(self.driver.execute_script(
                    "return window.benchLag"), 1),
                "live_updates": self.driver.execute_script("return window.benchUpdates")}

    def rss_mb(self) -> float:
        return _rss_mb(self.proc.pid)

    def _until(self, check: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if check():
                    return
            except Exception:  # a swap under way: look again
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the board did not show what was published")
            time.sleep(0.05)

    def close(self) -> None:
        self.driver.quit()
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def _chromium() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        raise SystemExit("needs Debian's chromium and chromium-driver (make browser)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--window-size=1280,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def _phase(board: _Board, settings: Settings, records: list[dict[str, Any]], open_n: int,
           storm: list[dict[str, Any]], rate: float) -> dict[str, Any]:
    """With ``open_n`` cases open: the desk's memory, a page load, and a storm of
    ``storm`` revisions watched from the page."""
    out: dict[str, Any] = {"open_cases": open_n, "desk_rss_mb": round(board.rss_mb(), 1),
                           "page_load_ms": round(board.load_ms(), 1)}
    board.wait_total(open_n, 30)
    board.watch()
    out["storm_s"] = round(_publish(settings, storm, rate), 2)
    resolved = sum(r["status"] == "resolved" for r in storm)
    board.wait_total(open_n - resolved, 60)
    out.update(board.watched())
    out["render_rows_ms"] = round(_render_ms(records, settings), 2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=10_000)
    p.add_argument("--quiet", type=int, default=100)
    p.add_argument("--updates", type=int, default=2_000)
    p.add_argument("--rate", type=float, default=200.0, help="storm revisions a second")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)

    from stream.broker import EmbeddedBroker, free_port
    from stream.topics import ensure_topics

    records = escalations(args.cases)
    quiet, rest = records[:args.quiet], records[args.quiet:]
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"ecm-bench-desk-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker(free_port()).start()
    board = None
    try:
        settings = Settings(broker=broker.bootstrap)
        ensure_topics(settings)
        board = _Board(settings, workdir)
        idle_mb = board.rss_mb()
        _publish(settings, quiet)
        storm = revisions(quiet, min(args.updates, len(quiet)))
        small = _phase(board, settings, quiet, len(quiet), storm, args.rate)
        still_open = len(quiet) - sum(r["status"] == "resolved" for r in storm)
        began = time.monotonic()
        _publish(settings, rest)
        board.wait_total(still_open + len(rest), 120)
        read_s = time.monotonic() - began
        big = _phase(board, settings, records, still_open + len(rest),
                     revisions(rest, args.updates), args.rate)
        big["read_s"] = round(read_s, 2)
        per_case_kb = (big["desk_rss_mb"] - idle_mb) * 1024 / len(records)
        result = {
            "machine": machine(), "cases": len(records), "updates": args.updates,
            "rate": args.rate, "desk_idle_rss_mb": round(idle_mb, 1),
            "desk_kb_per_case": round(per_case_kb, 2), "quiet": small, "storm": big,
            "ratios": {k: round(big[k] / small[k], 2) if small[k] else None
                       for k in ("page_load_ms", "longest_task_ms", "timer_lag_max_ms",
                                 "render_rows_ms")},
        }
    finally:
        if board is not None:
            board.close()
        broker.stop()
    text = json.dumps(result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
