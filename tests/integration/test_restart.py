"""A worker stopped and started again carries on: nothing raised twice, nothing lost."""

from __future__ import annotations

import functools
import re
import time
from collections import Counter

import pytest

from tests.cluster import Reader, produce
from tests.factories import visit

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
    got = Counter((e["escalation_id"], e["status"])
                  for e in reader.records[settings.topic_escalations])
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
