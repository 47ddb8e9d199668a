"""The batch lane (stream/worker/lane.py): what it hands over, and what Faust's consumer commits.

The consumer is the worker's own Faust consumer (no broker is needed until it starts); what
it would commit is read from its ``_new_offset``, the figure Faust's commit loop commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from stream.settings import Settings
from stream.worker.app import create_app
from stream.worker.lane import Lanes, deliver

ROSTER, EVENTS, WORK, OTHER = "ecm.roster", "ecm.events", "ecm.work", "elsewhere"


def _in_loop(test: Callable[[Any], Awaitable[None]]) -> Callable[[], None]:
    """Run ``test(consumer)`` in a new event loop, with a consumer made inside it (Faust's
    services bind the loop that is running when they are made)."""

    def run() -> None:
        async def main() -> None:
            await test(_consumer())

        asyncio.run(main())

    return run


def _consumer() -> Any:
    app = create_app(Settings())
    consumer = app.consumer
    # The conductor marks the agents' topics as acking when they start; no agent starts here.
    app.topics._acking_topics.update({ROSTER, EVENTS, WORK, OTHER})
    return consumer


def _message(topic: str, partition: int, offset: int, generation: int = 0) -> ConsumerMessage:
    return ConsumerMessage(topic, partition, offset, 1.0, 0, None, None,
                           f"{topic}:{partition}:{offset}".encode(), None, 0, 0,
                           TP(topic, partition), generation_id=generation)


async def _fetch(messages: list[ConsumerMessage]) -> AsyncIterator[tuple[TP, ConsumerMessage]]:
    for m in messages:
        yield m.tp, m


class _Handler:
    """Records each batch it is handed, and what the consumer would commit meanwhile."""

    def __init__(self, consumer: Any, on_call: Any = None) -> None:
        self.consumer = consumer
        self.batches: list[list[bytes]] = []
        self.committable_during: list[Any] = []
        self.on_call = on_call

    async def __call__(self, messages: list[Any]) -> None:
        self.batches.append([m.value for m in messages])
        self.committable_during.append(
            {tp: self.consumer._new_offset(tp) for tp in {m.tp for m in messages}})
        if self.on_call is not None:
            self.on_call()


@_in_loop
async def test_a_fetch_is_handed_over_in_order_in_slices_and_acked_after(consumer: Any) -> None:
    route, detect = _Handler(consumer), _Handler(consumer)
    lanes = Lanes({ROSTER: route, EVENTS: route, WORK: detect}, batch_max=3)
    fetched = [_message(ROSTER, 0, 10), _message(EVENTS, 0, 5), _message(WORK, 2, 7),
               _message(EVENTS, 0, 6), _message(ROSTER, 0, 11), _message(WORK, 2, 8)]
    await deliver(consumer, _fetch(fetched), lanes)
    # Roster and events share the router: one list, each topic in fetch order, cut at 3.
    assert route.batches == [[b"ecm.roster:0:10", b"ecm.roster:0:11", b"ecm.events:0:5"],
                             [b"ecm.events:0:6"]]
    assert detect.batches == [[b"ecm.work:2:7", b"ecm.work:2:8"]]
    # Nothing of a batch is committable while it is being handled...
    assert route.committable_during[0] == {TP(ROSTER, 0): None, TP(EVENTS, 0): None}
    assert detect.committable_during == [{TP(WORK, 2): None}]
    # ...and the first slice is once it has returned, before the second is handled.
    assert route.committable_during[1] == {TP(EVENTS, 0): 6}
    assert consumer._new_offset(TP(ROSTER, 0)) == 12
    assert consumer._new_offset(TP(EVENTS, 0)) == 7
    assert consumer._new_offset(TP(WORK, 2)) == 9


@_in_loop
async def test_other_topics_take_fausts_own_path_one_message_at_a_time(consumer: Any) -> None:
    delivered: list[bytes] = []

    async def callback(message: Any) -> None:
        delivered.append(message.value)

    consumer.callback = callback
    route = _Handler(consumer)
    lanes = Lanes({EVENTS: route}, batch_max=100)
    fetched = [_message(OTHER, 0, 1), _message(EVENTS, 1, 1), _message(OTHER, 0, 2)]
    await deliver(consumer, _fetch(fetched), lanes)
    assert delivered == [b"elsewhere:0:1", b"elsewhere:0:2"]
    assert route.batches == [[b"ecm.events:1:1"]]
    # The lane does not ack Faust's messages: their agents do.
    assert consumer._new_offset(TP(OTHER, 0)) is None


@_in_loop
async def test_from_a_message_of_an_older_generation_on_nothing_is_handled_or_acked(
        consumer: Any) -> None:
    consumer.app.consumer_generation_id = 4
    route, detect = _Handler(consumer), _Handler(consumer)
    lanes = Lanes({EVENTS: route, WORK: detect}, batch_max=2)
    fetched = [_message(EVENTS, 0, 1, generation=4), _message(EVENTS, 0, 2, generation=4),
               _message(EVENTS, 0, 3, generation=3), _message(EVENTS, 0, 4, generation=4),
               _message(WORK, 0, 1, generation=4)]
    await deliver(consumer, _fetch(fetched), lanes)
    assert route.batches == [[b"ecm.events:0:1", b"ecm.events:0:2"]]
    # Offset 3 was not processed, so nothing past it may be committed: acknowledging 4
    # alone would let Faust commit 5.
    assert consumer._acked[TP(EVENTS, 0)] == [1, 2]
    assert consumer._new_offset(TP(EVENTS, 0)) == 3
    assert detect.batches == []


@_in_loop
async def test_a_batch_during_which_a_rebalance_begins_is_not_acked(consumer: Any) -> None:

    def rebalance() -> None:
        consumer.app.consumer_generation_id += 1

    route = _Handler(consumer, on_call=rebalance)
    lanes = Lanes({EVENTS: route}, batch_max=100)
    await deliver(consumer, _fetch([_message(EVENTS, 0, 1)]), lanes)
    assert route.batches == [[b"ecm.events:0:1"]]
    assert consumer._acked[TP(EVENTS, 0)] == []


@_in_loop
async def test_nothing_is_handed_over_while_the_flow_is_stopped(consumer: Any) -> None:
    consumer.stop_flow()
    route = _Handler(consumer)
    await deliver(consumer, _fetch([_message(EVENTS, 0, 1)]), Lanes({EVENTS: route}, 10))
    assert route.batches == []
    assert consumer._acked[TP(EVENTS, 0)] == []


@_in_loop
async def test_a_message_read_already_is_dropped_and_a_gap_is_recorded(consumer: Any) -> None:
    consumer._read_offset[TP(EVENTS, 0)] = 5
    route = _Handler(consumer)
    fetched = [_message(EVENTS, 0, 4), _message(EVENTS, 0, 6), _message(EVENTS, 0, 9)]
    await deliver(consumer, _fetch(fetched), Lanes({EVENTS: route}, 10))
    assert route.batches == [[b"ecm.events:0:6", b"ecm.events:0:9"]]
    # 7 and 8 never came (compaction, transaction markers): Faust commits past them.
    assert consumer._new_offset(TP(EVENTS, 0)) == 10


@_in_loop
async def test_a_handler_that_raises_leaves_its_batch_unacked(consumer: Any) -> None:

    def fail() -> None:
        raise RuntimeError("the broker refused a write")

    route = _Handler(consumer, on_call=fail)
    with pytest.raises(RuntimeError):
        await deliver(consumer, _fetch([_message(EVENTS, 0, 1)]), Lanes({EVENTS: route}, 10))
    assert consumer._acked[TP(EVENTS, 0)] == []


@_in_loop
async def test_a_partition_the_lane_processes_is_not_reported_idle(consumer: Any) -> None:
    """Faust's consumer thread checks each partition's event path every few seconds and
    logs at error, with the advice to raise ``stream_processing_timeout``, a partition with
    records to read that no stream has taken an event from in five minutes. The lane's
    partitions never pass through a stream, and the quiet monitor drops the per-message
    call that notes it: every busy partition was reported stuck. The lane notes each
    partition it hands over, once a batch."""
    app = consumer.app
    lanes = Lanes({EVENTS: _Handler(consumer), WORK: _Handler(consumer)}, batch_max=10)
    before = asyncio.get_running_loop().time()
    await deliver(consumer, _fetch([_message(EVENTS, 3, 1), _message(WORK, 2, 4)]), lanes)
    inbound = app.monitor.stream_inbound_time
    assert set(inbound) == {TP(EVENTS, 3), TP(WORK, 2)}
    assert all(t >= before - 1 for t in inbound.values())
