"""A hostile stream through a real worker: every record accounted for, and the worker never
stops (tests/fuzz.py generates it from a fixed seed)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter

import pytest

from tests import fuzz
from tests.cluster import Reader

pytestmark = pytest.mark.integration

RECORDS = 20_000


def _progress(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/progress", timeout=10) as r:
        return json.loads(r.read())


def test_a_hostile_stream_never_stops_the_worker_and_every_record_is_accounted_for(
        settings, spawn_worker):
    worker = spawn_worker("fuzz")
    worker.wait_ready()
    sent = fuzz.produce(settings, fuzz.messages(seed=29, records=RECORDS, now=time.time()))
    assert sum(sent.values()) >= RECORDS
    reader = Reader(settings, settings.topic_deadletter)
    port = worker.settings.web_port

    def accounted(r: Reader) -> bool:
        dead = Counter(d["source"]["topic"] for d in r.records[settings.topic_deadletter])
        return fuzz.accounted(settings, _progress(port)["accepted"], dead) == dict(sent)

    # Events that name a visit never rostered wait out their grace before they are
    # dead-lettered; then nothing more may come.
    reader.until(accounted, timeout_s=240, quiet_s=2 * settings.unscheduled_grace_s)
    assert accounted(reader)
    assert worker.process is not None and worker.process.poll() is None
    reasons = Counter(d["reason"] for d in reader.records[settings.topic_deadletter])
    # Every mutation class reached the worker and was named.
    for reason in ("invalid_json", "invalid_utf8", "not_an_object", "missing_field",
                   "wrong_type", "invalid_value", "invalid_time", "invalid_coordinates",
                   "value_too_large", "too_deeply_nested", "unknown_visit", "duplicate_event",
                   "unknown_escalation", "not_allowed"):
        assert reasons[reason] > 0, (reason, reasons)
    reader.close()
