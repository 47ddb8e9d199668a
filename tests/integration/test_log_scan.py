"""A demo run's logs (the worker's and the desk's) and its metric labels name no person:
no client id, worker id, visit or event id, phone number, tag or coordinate of the day's
roster and events. What the demo prints on its console is the product's view of the
escalations, for the person at the screen, and is not scanned."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from simulator.demo_feed import build_demo_feed
from tests.cluster import ROOT

pytestmark = pytest.mark.integration

DURATION_S = 45


def _personal(values: list[dict]) -> set[str]:
    """Every value of the feed that names or locates a person (coordinates to four
    places, which any longer writing of them begins with)."""
    out: set[str] = set()
    for doc in values:
        for key in ("client_id", "visit_id", "event_id", "worker_id", "caller_number",
                    "tag_id"):
            if isinstance(doc.get(key), str):
                out.add(doc[key])
        out.update(doc.get("worker_ids", ()))
        out.update(doc.get("client_phones", ()))
        out.update(doc.get("nfc_tags", ()))
        for place in (doc, doc.get("location") or {}):
            for axis in ("lat", "lon"):
                if isinstance(place.get(axis), float):
                    out.add(f"{place[axis]:.4f}")
    return out


def test_a_demo_runs_logs_and_metric_labels_name_no_person(tmp_path):
    feed = build_demo_feed(time.time(), visits=300, seed=7)  # the demo's own, by its seed
    personal = _personal(feed.roster + [e for _, e in feed.events])
    assert len(personal) > 1000
    demo = subprocess.Popen([sys.executable, "-m", "stream.cli", "demo", "--duration",
                             str(DURATION_S)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={k: v for k, v in os.environ.items()
                                 if not k.startswith("ECM_")})
    assert demo.stdout is not None
    first = demo.stdout.readline()
    found = re.search(r"worker log (\S+); worker metrics (\S+)", first)
    assert found, first
    log_dir, metrics_url = Path(found[1]).parent, found[2]
    console = [first]
    metrics = ""
    started = time.monotonic()
    for line in demo.stdout:
        console.append(line)
        if not metrics and time.monotonic() - started > DURATION_S - 10:
            with urllib.request.urlopen(metrics_url, timeout=10) as r:
                metrics = r.read().decode()
    assert demo.wait(60) == 0, "".join(console)[-3000:]
    assert metrics, "".join(console)[-3000:]
    # The day happened: escalations were raised and input was dead-lettered.
    assert "escalations seen" in "".join(console) and "DEAD-LETTER" in "".join(console)
    logs = {p.name: p.read_text(errors="replace") for p in log_dir.glob("*.log")}
    assert {"worker.log", "desk.log"} <= set(logs)
    assert "Ready" in logs["worker.log"]
    labels = "\n".join(re.findall(r"\{[^}]*\}", metrics))
    assert 'reason="' in labels and 'kind="' in labels
    for where, text in [*logs.items(), ("metric labels", labels)]:
        leaked = sorted(v for v in personal
                        if re.search(rf"(?<![\w.-]){re.escape(v)}\d*(?![\w-])", text))
        assert not leaked, (where, leaked[:10])
