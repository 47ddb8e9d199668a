"""Worker runs through real workers: a carer's two visits sit in partitions owned by two
different worker processes; the check-in at the first reaches the run partition through
ecm.runs, and the run's prediction comes back through ecm.work to raise ``at_risk`` at the
second, before its late deadline, with the cause and the ETA."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from stream.timeutil import parse_instant
from stream.topics import ensure_topics, partition_for
from tests.cluster import Reader, produce
from tests.factories import event, north_of_home, visit

pytestmark = pytest.mark.integration


def _owned(port: int) -> list[int]:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                doc = json.loads(r.read())
                if doc["ready"]:
                    return doc["partitions"]
        except OSError:
            pass
        assert time.monotonic() < deadline, "the worker did not become ready"
        time.sleep(0.3)


def test_an_overrun_in_one_workers_partition_raises_at_risk_in_anothers(settings,
                                                                         spawn_worker):
    # Travel as the defaults give it: no overhead, 5 m/s.
    runs = {"runs": True, "topic_runs": settings.topic_work.replace("work", "runs"),
            "run_speed_m_s": 5.0, "run_overhead_s": 0.0}
    s = settings.with_(**runs)
    ensure_topics(s)
    first = spawn_worker("w-a", **runs)
    first.wait_ready()
    second = spawn_worker("w-b", **runs)
    second.wait_ready()
    # Both own partitions once the group has settled.
    deadline = time.monotonic() + 60
    while True:
        owned = [_owned(w.settings.web_port) for w in (first, second)]
        if all(owned) and not set(owned[0]) & set(owned[1]):
            break
        assert time.monotonic() < deadline, owned
        time.sleep(0.5)
    clients = [next(c for c in (f"rc{k}" for k in range(1000))
                    if partition_for(c, s.partitions) in part) for part in owned]

    reader = Reader(s, s.topic_escalations)
    esc = reader.records[s.topic_escalations]
    t = time.time()
    b_home = north_of_home(200)
    produce(s, s.topic_roster, [[
        visit("ra", client_id=clients[0], workers=("carer-1",), start=t, minutes=1),
        visit("rb", client_id=clients[1], workers=("carer-1",), start=t + 90, minutes=1,
              late_after_s=30, location={"lat": b_home[0], "lon": b_home[1]})]])
    # 40 s late at ra: out at t + 100, 200 m (40 s) to rb, there at t + 140: past its late
    # deadline (t + 120), and carried, since leaving ra on time (t + 60) was in time.
    time.sleep(max(0.0, t + 40 - time.time()))
    produce(s, s.topic_events, [[event(at=t + 40, visit_id="ra", client_id=clients[0],
                                       worker_id="carer-1")]])
    reader.until(lambda r: any(e["escalation_id"] == "rb:at_risk" for e in esc),
                 timeout_s=60)
    (r,) = [e for e in esc if e["escalation_id"] == "rb:at_risk"]
    assert parse_instant(r["detected_at"]) < t + 120  # before the late deadline
    ev = r["evidence"]
    assert ev["cause"] == "carried_from_previous_visit"
    assert abs(parse_instant(ev["expected_arrival"]) - (t + 140)) < 5
    assert ev["eta_basis"]["previous_visit_id"] == "ra" and ev["lead_s"] > 0
    # At the late deadline, late takes over, with the ETA.
    reader.until(lambda r: any(e["escalation_id"] == "rb:late" for e in esc), timeout_s=120)
    late = next(e for e in esc if e["escalation_id"] == "rb:late")
    assert late["evidence"]["cause"] == "carried_from_previous_visit"
    assert parse_instant(late["evidence"]["expected_arrival"]) >= t + 135
    reader.close()
