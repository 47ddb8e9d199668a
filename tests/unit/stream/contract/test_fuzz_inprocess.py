"""The parsers and the rules fuzzed in process with hypothesis: raw bytes, arbitrary JSON,
hostile values in every field of a valid record, and the generator's mutations, through the
worker's own stages (router, detectors, sweep) to ``ecm.roster``, ``ecm.events`` and
``ecm.actions``. Nothing raises, and every record the contract counts in a message is
accepted or rejected with a reason, per topic. The million-input run against a real worker
is ``python -m benchmarks.fuzz`` (docs/operating.md, "Failure scenarios")."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.contract.deadletter import REASONS
from tests import fuzz
from tests.factories import T0
from tests.unit.stream.inprocess import Worker

TOPICS = {"roster": "ecm.roster", "events": "ecm.events", "actions": "ecm.actions"}
KINDS = {"ecm.roster": "roster", "ecm.events": "event", "ecm.actions": "action"}
GRACE_S = 120.0

_FAST = settings(max_examples=400, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _play(messages: list[tuple[str, bytes]]) -> None:
    """Every message through one worker; then past every grace, so that waiting events
    are decided; then the accounting, per topic."""
    w = Worker(start=T0, unscheduled_grace_s=GRACE_S)
    sent: Counter[str] = Counter()
    for i, (topic, value) in enumerate(messages):
        w.send(TOPICS[topic], value, partition=i % w.settings.partitions)
        sent[TOPICS[topic]] += fuzz.count(value)
    w.sweep(T0 + GRACE_S + 1)
    w.sweep(T0 + 2 * GRACE_S + 2)
    rejected = Counter(r.source.topic for r in w.rejections)
    got = {t: w.accepted[KINDS[t]] + rejected[t] for t in sent}
    assert got == dict(sent), (got, dict(sent), w.reasons())
    assert set(w.reasons()) <= set(REASONS)


_topic = st.sampled_from(sorted(TOPICS))
_scalar = (st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 64 - 1)
           | st.floats(allow_nan=False) | st.text(max_size=40))
_json = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=5)
                     | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=30)
# Values JSON can carry that orjson does not write: NaN and the infinities, lone surrogates,
# a number no double holds, and invalid UTF-8.
_odd = st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b'"\\ud800"', b'"\\udfff x"',
                        b"1e400", b"-" + b"9" * 400, b'"\xff\xfe"', b'"\xc3"', b"{}", b"[]",
                        b'"' + b"\\u0000" * 10 + b'"'])


@_FAST
@given(st.lists(st.tuples(_topic, st.binary(max_size=200)), min_size=1, max_size=8))
def test_random_bytes(messages: list[tuple[str, bytes]]) -> None:
    _play(messages)


@_FAST
@given(st.lists(st.tuples(_topic, _json.map(orjson.dumps)), min_size=1, max_size=8))
def test_arbitrary_json(messages: list[tuple[str, bytes]]) -> None:
    _play(messages)


def _valid(topic: str, seed: int) -> dict[str, Any]:
    """A valid record of the topic, from the generator's own makers."""
    rng = random.Random(seed)
    v = fuzz._valid_visit(rng, seed, T0)
    if topic == "roster":
        return v
    if topic == "events":
        return fuzz._valid_event(rng, v, seed, T0)
    return fuzz._valid_action(rng, v, seed, T0)


@_FAST
@given(st.lists(st.tuples(_topic, st.integers(0, 10_000), st.data()), min_size=1, max_size=6))
def test_hostile_values_in_every_field(cases: list[tuple[str, int, Any]]) -> None:
    messages = []
    for topic, seed, data in cases:
        doc = _valid(topic, seed)
        key = data.draw(st.sampled_from(sorted(doc)))
        raw = orjson.dumps({**doc, key: "__odd__"})
        value = raw.replace(b'"__odd__"', data.draw(_odd | _json.map(orjson.dumps)))
        if data.draw(st.booleans()):
            value = b"[" + value + b"," + orjson.dumps(doc) + b"]"
        messages.append((topic, value))
    _play(messages)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2 ** 32), st.sampled_from([0.0, 0.05, 1.0]))
def test_the_generators_mutations(seed: int, huge: float) -> None:
    _play([(t, v) for t, v, _ in fuzz.messages(seed, records=60, now=T0, huge=huge)])
