"""Two workers share the work; one is SIGKILLed mid-stream. Nothing is lost, nothing doubled."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from stream.contract.records import lifecycle
from tests.cluster import Reader, produce
from tests.factories import event, visit

pytestmark = pytest.mark.integration

VISITS = 48


def _plan(now: float):
    """Visits whose deadlines fall before, during and after the fail-over, and the events
    (send instant, event) that answer some of them, with the escalations they must cause."""
    roster, events, expected = [], [], Counter()
    start = now + 2
    for i in range(VISITS):
        late = 6 + i * 1.4
        missed = late + 10
        vid = f"v{i:02d}"
        cid = f"c{i:02d}"
        roster.append(visit(vid, client_id=cid, start=start, late_after_s=late,
                            missed_after_s=missed, no_checkout_after_s=3600))
        kind = i % 4
        if kind == 1:
            arrive = start + late - 3  # on time: nothing
        elif kind == 2:
            arrive = start + late + 3  # late, then resolved
            expected[(f"{vid}:late", "open")] += 1
            expected[(f"{vid}:late", "resolved")] += 1
        elif kind == 3:
            arrive = start + missed + 3  # missed, then both resolved
            for k in ("late", "missed"):
                expected[(f"{vid}:{k}", "open")] += 1
                expected[(f"{vid}:{k}", "resolved")] += 1
        else:
            arrive = None  # never comes
            expected[(f"{vid}:late", "open")] += 1
            expected[(f"{vid}:missed", "open")] += 1
        if arrive is not None:
            events.append((arrive, event(at=arrive, visit_id=vid, client_id=cid,
                                         event_id=f"{vid}-in")))
    events.sort(key=lambda e: e[0])
    return roster, events, expected


def _play(settings, events, stop: threading.Event) -> None:
    for at, ev in events:
        while time.time() < at:
            if stop.wait(0.05):
                return
        produce(settings, settings.topic_events, [ev])


def test_sigkill_of_a_worker_loses_and_doubles_nothing(settings, spawn_worker):
    a = spawn_worker("w-a")
    b = spawn_worker("w-b")
    a.wait_ready()
    b.wait_ready()
    # Both own partitions before the run starts.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not ("restored" in a.log() and "restored" in b.log()):
        time.sleep(0.2)
    reader = Reader(settings, settings.topic_escalations)
    now = time.time()
    roster, events, expected = _plan(now)
    produce(settings, settings.topic_roster, [roster[i:i + 10] for i in range(0, VISITS, 10)])
    stop = threading.Event()
    player = threading.Thread(target=_play, args=(settings, events, stop), daemon=True)
    player.start()
    try:
        time.sleep(max(0.0, now + 14 - time.time()))
        a.kill()
        reader.until(lambda r: len(r.records[settings.topic_escalations])
                     >= sum(expected.values()), timeout_s=150, quiet_s=8)
    finally:
        stop.set()
        player.join(5)
        reader.close()
    records = reader.records[settings.topic_escalations]
    got = Counter((e["escalation_id"], lifecycle(e)) for e in records if lifecycle(e))
    doubled = {k: n for k, n in got.items() if n > 1}
    assert not doubled, doubled
    missing = sorted(set(expected) - set(got))
    assert not missing, (missing, b.log()[-3000:])
    # The dead worker's input partitions stall until the group notices (the session
    # timeout); a deadline whose check-in is stuck there waits for it to be read (the read
    # marks), so nothing is raised falsely.
    extra = sorted(set(got) - set(expected))
    assert not extra, extra
    assert "restored" in b.log()
