"""A worker stopped and started again carries on: nothing raised twice, nothing lost."""

from __future__ import annotations

import functools
import re
import time
from collections import Counter

import pytest

from stream.contract.records import lifecycle
from tests.cluster import Reader, metric, produce
from tests.factories import event, visit

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("store", "checkpoint_bytes", "checkpoint_age"), [
    ("memory://", None, None), ("rocksdb://", None, None),
    # Checkpoints as often as they go: the second worker replays from the last one.
    ("memory://", 1, None),
    # By age: every partition checkpoints, idle ones too, and the second worker keeps the
    # age of the last one.
    ("memory://", None, 1.0)])
def test_restart_resumes_from_state(settings, spawn_worker, tmp_path, store, checkpoint_bytes,
                                    checkpoint_age):
    datadir = str(tmp_path / "data")
    changes = {"checkpoint_min_bytes": checkpoint_bytes, "checkpoint_max_age_s": checkpoint_age,
               "state_retention_s": checkpoint_age and 2 * checkpoint_age}
    settings = settings.with_(**changes)
    spawn = functools.partial(spawn_worker, **changes)
    first = spawn("first", store=store, datadir=datadir)
    first.wait_ready()
    reader = Reader(settings, settings.topic_escalations)
    now = time.time()
    produce(settings, settings.topic_roster, [[
        visit(f"v{i}", client_id=f"c{i}", start=now, late_after_s=3, missed_after_s=25,
              no_checkout_after_s=3600) for i in range(8)]])
    reader.until(lambda r: len(r.records[settings.topic_escalations]) >= 8, timeout_s=60)
    first.stop()
    restarted = time.time()
    second = spawn("second", store=store, datadir=datadir)
    second.wait_ready()
    try:
        reader.until(lambda r: len(r.records[settings.topic_escalations]) >= 16,
                     timeout_s=90, quiet_s=3)
    finally:
        reader.close()
    got = Counter((e["escalation_id"], lifecycle(e))
                  for e in reader.records[settings.topic_escalations] if lifecycle(e))
    assert got == Counter({(f"v{i}:{k}", "open"): 1 for i in range(8) for k in ("late", "missed")})
    read_back = [int(n) for n in re.findall(r"\((\d+) changelog", second.log())]
    assert read_back, second.log()[-2000:]
    if store == "rocksdb://":
        assert sum(read_back) == 0  # everything came from the local store
    else:
        assert sum(read_back) >= 1  # rebuilt from the changelog
    found = re.findall(r"checkpoint at (\d+) from ([\d.]+)", second.log())
    bases = [int(b) for b, _ in found]
    assert len(bases) == settings.partitions
    if checkpoint_age:
        assert all(bases), second.log()[-2000:]
        # The age of each partition's last checkpoint, as the first worker wrote it.
        assert all(float(t) < restarted for _, t in found), found
    elif checkpoint_bytes:
        assert any(bases), second.log()[-2000:]  # the partitions with visits replayed from one
    else:
        assert not any(bases)


def _until(done, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_check_ins_waiting_for_their_roster_survive_a_restart(settings, spawn_worker, tmp_path,
                                                              store):
    """The roster feed is down and check-ins wait for their visits; the worker is restarted
    meanwhile. The new one holds the same waiting check-ins (from the changes ecm.state
    carries, or from its RocksDB), and matches them when the roster comes: no visit they
    attended is called late, while a visit nobody attended is."""
    waiting = "ecm_events_waiting_for_roster"
    spawn = functools.partial(spawn_worker, store=store, datadir=str(tmp_path / "data"),
                              unscheduled_grace_s=600)
    first = spawn("first")
    first.wait_ready()
    # The check-ins reach Kafka well before the late deadline (by when they count).
    now = time.time()
    fast = {"start": now, "late_after_s": 3, "missed_after_s": 6}
    produce(settings, settings.topic_events, [[
        event(at=now, visit_id=f"v{i}", client_id=f"c{i}", event_id=f"e{i}")
        for i in range(12)]])
    _until(lambda: metric(first.settings.web_port, waiting) == 12)
    # Four rostered before the restart: matched, and written as removed.
    produce(settings, settings.topic_roster, [[visit(f"v{i}", client_id=f"c{i}", **fast)
                                               for i in range(4)]])
    _until(lambda: metric(first.settings.web_port, waiting) == 8)
    first.stop()
    second = spawn("second")
    second.wait_ready()
    _until(lambda: metric(second.settings.web_port, waiting) == 8)
    restored = [int(n) for n in re.findall(r"(\d+) pending events", second.log())]
    assert sum(restored) == 8, second.log()[-2000:]
    reader = Reader(settings, settings.topic_escalations)
    try:
        # Their deadlines are past when the roster comes: unmatched, they would be late.
        produce(settings, settings.topic_roster, [
            [visit(f"v{i}", client_id=f"c{i}", **fast) for i in range(4, 12)],
            [visit("nobody", client_id="cz", **fast)]])
        reader.until(lambda r: len(r.records[settings.topic_escalations]) >= 2,
                     timeout_s=60, quiet_s=3)
    finally:
        reader.close()
    got = sorted(e["escalation_id"] for e in reader.records[settings.topic_escalations])
    assert got == ["nobody:late", "nobody:missed"]
    assert metric(second.settings.web_port, waiting) == 0
    assert metric(second.settings.web_port, "ecm_visits_checked_in") == 12
