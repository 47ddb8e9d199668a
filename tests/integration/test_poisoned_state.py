"""Poisoned state: a corrupt or truncated record in a partition's ``ecm.state`` or
``ecm.escalations``, read back from the broker by the loader itself.

A truncated slice of the last checkpoint would lose the visits only it held: the rebuild
falls back to the checkpoint before it and ends with the partition's state exactly. What no
later record holds again is stated, with the partition and the offsets. The rebuild never
stops on a record.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest
from kafka import KafkaProducer

from stream.clock import ManualClock
from stream.state import keys as K
from stream.state.store import MemoryStore
from stream.worker.recovery import load_partition
from tests.factories import T0, event, visit
from tests.unit.stream.harness import Harness, Log, partition_state

pytestmark = pytest.mark.integration


def _two_checkpoints() -> tuple[Harness, Log, int, int]:
    """A partition 0 with two completed checkpoints, the second in several slices, and
    changes before, between and after them: the harness and its changelog, and the two
    checkpoints' first offsets."""
    h = Harness(checkpoint_max_age_s=3600)  # the harness starts at T0 - 3600
    log = Log(h, budget=2)
    h.roster(*[visit(f"v{i}", client_id=f"c{i}", start=T0 + 60 * i) for i in range(5)])
    log.publish()
    bases = []
    for due, k in ((T0, 0), (T0 + 3600, 1)):
        h.at(due)
        log.publish()  # a checkpoint begins, by age
        while h.detector.checkpointer.under_way:
            h.events(event(at=h.clock.now() + 1, visit_id=f"v{k}", client_id=f"c{k}",
                           event_id=f"e{h.clock.now()}"))
            log.publish()
        bases.append(h.detector.checkpointer.base)
        h.at(due + 1200)  # late and missed escalations between and after the checkpoints
        log.publish()
    h.events(event(at=h.clock.now(), visit_id="v4", client_id="c4", event_id="last"))
    log.publish()
    first, second = bases
    assert 0 < first < second and h.escalations
    return h, log, first, second


def _publish(settings, log: Log, h: Harness, state: dict[int, bytes] | None = None,
             escalations: dict[int, bytes] | None = None) -> None:
    """The changelog and escalation records to partition 0, some replaced by ``state`` and
    ``escalations`` (offset: the bytes written there instead)."""
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    for topic, docs, poison in ((settings.topic_state, log.docs, state or {}),
                                (settings.topic_escalations, h.escalations, escalations or {})):
        for offset, doc in enumerate(docs):
            value = poison.get(offset, orjson.dumps(doc))
            meta = producer.send(topic, value, partition=0).get(timeout=10)
            assert meta.offset == offset
    producer.close()


def _load(settings, h: Harness, caplog):
    skipped: list[str] = []
    with caplog.at_level(logging.INFO, logger="stream.worker.recovery"):
        rebuilt = asyncio.run(load_partition(settings, 0, ManualClock(h.clock.now()),
                                             MemoryStore(), skipped=skipped.append))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return rebuilt, skipped, errors


def _slices(log: Log, base: int) -> list[int]:
    return [o for o, d in enumerate(log.docs) if o >= base and K.ESCALATIONS in d
            and d.get(K.BASE) != base]


@pytest.mark.parametrize("which", ["first", "last"])
def test_a_truncated_slice_of_the_last_checkpoint_falls_back_to_the_one_before(
        settings, caplog, which):
    h, log, first, second = _two_checkpoints()
    slices = _slices(log, second)
    assert len(slices) >= 3 and slices[0] == second
    bad = slices[0] if which == "first" else slices[-1]
    whole = orjson.dumps(log.docs[bad])
    _publish(settings, log, h, state={bad: whole[:len(whole) // 2]})  # cut short
    rebuilt, skipped, errors = _load(settings, h, caplog)
    assert skipped == ["state"]
    # A rebuild arms each visit's first timer again: those past fire at its first sweep,
    # and raise nothing the partition had not raised.
    assert rebuilt.sweep().escalations == []
    assert partition_state(rebuilt) == partition_state(h.detector)
    assert (f"a record of the checkpoint at ecm.state offset {second} cannot be read; "
            f"rebuilding from the checkpoint before it, at {first}") in caplog.text
    assert any(f"skipped {settings.topic_state} at offset {bad}" in e for e in errors), errors
    assert any(f"in a checkpoint the rebuild fell back from (offsets {bad})" in e
               for e in errors), errors
    # The next checkpoint is due: the rebuild read from the older one.
    assert rebuilt.checkpointer.base == first


def test_a_record_no_later_one_repeats_is_stated_lost(settings, caplog):
    h, log, _first, second = _two_checkpoints()
    tail = len(log.docs) - 1  # the last delta: the check-in of v4, after both checkpoints
    assert log.docs[tail][K.BASE] == second
    # Two escalation records: the first the rebuild reads (v1's late resolved, which the
    # second checkpoint's later slices carry again) and the last (v4's missed resolved,
    # by the check-in in the lost delta, which nothing repeats).
    esc = log.docs[second][K.ESCALATIONS_FROM]
    last = len(h.escalations) - 1
    assert [h.escalations[i]["escalation_id"] for i in (esc, last)] == ["v1:late", "v4:missed"]
    _publish(settings, log, h, state={tail: b'{"p": 0, "visits": 7}'},
             escalations={esc: b"\x00\x01 not json", last: b'{"escalation_id": []}'})
    rebuilt, skipped, errors = _load(settings, h, caplog)
    assert rebuilt.sweep().escalations == []
    assert sorted(skipped) == ["escalations", "escalations", "state"]
    assert "falls back" not in caplog.text and "rebuilding from" not in caplog.text
    lost = [e for e in errors if "record(s) lost" in e]
    assert len(lost) == 1 and f"(offsets {tail})" in lost[0] and lost[0].startswith(
        "partition 0: 1 ecm.state record(s) lost")
    # What the record held, and only that, is missing: v4's check-in.
    assert "last" in h.detector.state.event_index and "last" not in rebuilt.state.event_index
    assert not rebuilt.visits["v4"].checkins and h.detector.visits["v4"].checkins
    assert any(f"2 ecm.escalations record(s) unreadable (offsets {esc}, {last})" in e
               for e in errors)
    # The book recovered the first from a later slice; the second's status is lost.
    got, held = rebuilt.book.records, h.detector.book.records
    assert {k: v for k, v in got.items() if k != "v4:missed"} == {
        k: v for k, v in held.items() if k != "v4:missed"}
    assert (got["v4:missed"].status, held["v4:missed"].status) == ("open", "resolved")
    # Nothing of a record's values in what is said.
    assert not any("v4" in e or "c4" in e for e in errors)


def test_unreadable_last_records_do_not_send_the_rebuild_back_to_the_beginning(
        settings, caplog):
    h, log, _first, second = _two_checkpoints()
    _publish(settings, log, h)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    for value in (b"\xff not json", b"[1, 2, 3]", b'{"p": 0, "visits": "nope"}'):
        producer.send(settings.topic_state, value, partition=0).get(timeout=10)
    producer.close()
    rebuilt, skipped, _errors = _load(settings, h, caplog)
    assert rebuilt.sweep().escalations == []
    assert partition_state(rebuilt) == partition_state(h.detector)
    assert skipped == ["state"] * 3
    # Read from the last checkpoint, which the last readable record names, not from 0.
    read = len(log.docs) - second + 3
    assert f"({read} changelog" in caplog.text and f"checkpoint at {second} " in caplog.text
