"""Rebuilds once the topics' retention has dropped what came before the last checkpoint.

The embedded broker cannot be asked to delete records (it does not implement DeleteRecords),
so the test has it report the first offsets a deleting broker would: everything before the
checkpoint gone. The partition is read from the broker with the loader itself, and compared
with the partition that wrote it.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from kafka import KafkaProducer

from stream.clock import ManualClock
from stream.state.store import MemoryStore, RocksStore
from stream.worker.recovery import load_partition
from tests.factories import T0, event, north_of_home, visit
from tests.unit.stream.harness import Harness, Log, partition_state

pytestmark = pytest.mark.integration


def _written(settings):
    """A partition 0 with a completed checkpoint and changes before and after it, published
    to the broker: its changelog and escalations at the offsets the harness gave them."""
    h = Harness(checkpoint_max_age_s=3600)  # the harness starts at T0 - 3600
    log = Log(h, budget=2)
    h.roster(*[visit(f"v{i}", client_id=f"c{i}", start=T0 + 60 * i) for i in range(5)])
    log.publish()
    far = dict(zip(("lat", "lon"), north_of_home(1000), strict=True))
    for k in range(3):  # the last one in the wrong place: an escalation before the checkpoint
        h.events(event(at=T0 - 600 + k, visit_id=f"v{k}", client_id=f"c{k}", event_id=f"b{k}",
                       **(far if k == 2 else {})))
        log.publish()
    h.clock.set(T0)
    log.publish()  # the checkpoint, by age
    while h.detector.checkpointer.under_way:
        h.events(event(at=h.clock.now() + 1, visit_id="v2", client_id="c2",
                       event_id=f"e{h.clock.now()}"))
        log.publish()
    h.at(T0 + 1200)  # late escalations, after the checkpoint began
    log.publish()
    h.events(event(at=h.clock.now(), visit_id="v3", client_id="c3", event_id="after"))
    log.publish()
    assert h.detector.checkpointer.base == 4 and log.docs[4]["e"] == 1 and len(h.escalations) == 4
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    for topic, docs in ((settings.topic_state, log.docs),
                        (settings.topic_escalations, h.escalations)):
        for doc in docs:
            producer.send(topic, orjson.dumps(doc), partition=0).get(timeout=10)
    producer.close()
    return h, log


def _retention_at(monkeypatch, settings, state: int, escalations: int) -> None:
    firsts = {settings.topic_state: state, settings.topic_escalations: escalations}

    async def beginning_offsets(self, partitions):
        return {tp: firsts[tp.topic] for tp in partitions}

    monkeypatch.setattr(AIOKafkaConsumer, "beginning_offsets", beginning_offsets)


def _load(settings, h, store):
    return asyncio.run(load_partition(settings, 0, ManualClock(h.clock.now()), store))


def test_a_store_behind_the_retention_is_rebuilt_from_the_checkpoint(
        settings, tmp_path, monkeypatch, caplog):
    h, log = _written(settings)
    base = h.detector.checkpointer.base
    store = RocksStore(tmp_path / "db")
    try:
        for offset in range(2):  # a worker that stopped after two messages
            store.apply_delta(log.docs[offset], offset)
        _retention_at(monkeypatch, settings, base, log.docs[base]["e"])
        with caplog.at_level(logging.INFO, logger="stream.worker.recovery"):
            rebuilt = _load(settings, h, store)
    finally:
        store.close()
    assert "retention dropped records the local store has not read" in caplog.text
    # Read from the checkpoint, not from where the store stood.
    assert f"({len(log.docs) - base} changelog" in caplog.text, caplog.text
    assert rebuilt.sweep().escalations == []  # its timers already past: raised before
    assert partition_state(rebuilt) == partition_state(h.detector)


def test_a_rebuild_from_a_checkpoint_inside_the_retention_says_nothing(
        settings, monkeypatch, caplog):
    h, log = _written(settings)
    base = h.detector.checkpointer.base
    _retention_at(monkeypatch, settings, base, log.docs[base]["e"])
    with caplog.at_level(logging.INFO, logger="stream.worker.recovery"):
        rebuilt = _load(settings, h, MemoryStore())
    assert "retention" not in caplog.text
    assert rebuilt.sweep().escalations == []
    assert partition_state(rebuilt) == partition_state(h.detector)
    assert rebuilt.checkpointer.at == h.detector.checkpointer.at


def test_a_checkpoint_dropped_by_the_retention_is_an_error(settings, monkeypatch, caplog):
    h, _log = _written(settings)
    base = h.detector.checkpointer.base
    _retention_at(monkeypatch, settings, base + 1, 0)
    with caplog.at_level(logging.INFO, logger="stream.worker.recovery"):
        _load(settings, h, MemoryStore())
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "older than the topics' retention" in errors[0].getMessage()
