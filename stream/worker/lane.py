"""The batch lane: each fetch's messages handed to the worker's stages as lists.

Faust delivers a message to an agent through its conductor, a channel queue and a stream,
each with per-message work (flow-control waits, a task raced against the flow's suspension,
a queue put and get, sensors, an ack): ten times what a check-in's own checks cost (the
Faust floor in docs/performance.md). A worker whose agents take batches still pays that
for every message, so with one check-in per message Faust's path is nine tenths of the
work.

The lane replaces only that delivery. Faust's consumer still fetches (``getmany``), keeps
the read offsets and the gaps, acks and commits, rebalances and seeks; the messages one
fetch returns for a lane's topics are collected per lane and handed over as lists of at
most ``batch_max`` messages, then acknowledged to the consumer, so that Faust's commit loop
commits their offsets exactly as it would an agent's. From a slice holding a message
fetched under an older consumer generation, or once the flow is stopped for a rebalance,
nothing more of the fetch is handed over or acknowledged, and a slice during which a
rebalance began is not acknowledged: the partitions' owners read them again from the
committed offsets.
Messages of any other topic take Faust's own path, one at a time.

The lane is installed by :mod:`stream.worker.faust_patches`, for an app with lanes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from faust.transport import consumer as faust_consumer

# A lane's handler: a list of Faust messages (topic, partition, offset, timestamp, value).
Handler = Callable[[list[Any]], Awaitable[None]]

# Yield to the event loop at least this often while a fetch is walked (as Faust does).
_YIELD_EVERY = 100


class Lanes:
    """Which topics go to which handler, and how many messages a handler takes at once."""

    def __init__(self, handlers: Mapping[str, Handler], batch_max: int) -> None:
        self.handlers = dict(handlers)
        self.batch_max = batch_max


async def drain(consumer: Any, fetcher: Any, lanes: Lanes) -> None:
    """Faust's drain loop (``Consumer._drain_messages``) with the lane's delivery."""
    consumer_should_stop = consumer._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    flag = faust_consumer.CONSUMER_FETCHING
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            consumer.diag.set_flag(flag)
            fetched = consumer.getmany(timeout=1.0)
            # As Faust: getmany can return at once in a loop, never releasing the loop.
            await consumer.sleep(0)
            if not consumer.should_stop:
                await deliver(consumer, fetched, lanes)
            consumer.diag.unset_flag(flag)
    except consumer.consumer_stopped_errors:
        if consumer.transport.app.should_stop:
            consumer.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if consumer.transport.app.should_stop:
            consumer.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        consumer.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        consumer.diag.unset_flag(flag)


async def deliver(consumer: Any, fetched: Any, lanes: Lanes) -> None:
    """Walk one fetch (an async iterator of ``(tp, message)``): messages of other topics go
    to Faust's callback at once, as Faust delivers them; each lane's messages are collected
    and handed over after the walk, in fetch order, then acknowledged."""
    read_offset = consumer._read_offset
    handlers = lanes.handlers
    collected: dict[str, list[Any]] = {}
    since_yield = 0
    async for tp, message in fetched:
        since_yield += 1
        if since_yield > _YIELD_EVERY:
            await asyncio.sleep(0)
            since_yield = 0
        offset = message.offset
        r_offset = read_offset[tp]
        if r_offset is not None and offset < r_offset:
            continue  # read already (Faust drops these too)
        if r_offset and offset - r_offset > 1 and consumer.app.topics.acks_enabled_for(tp.topic):
            # Offsets that will never come (compaction, transaction markers): Faust commits
            # past them once everything around them is acknowledged.
            await consumer._add_gap(tp, r_offset + 1, offset)
        if tp.topic in handlers:
            collected.setdefault(tp.topic, []).append(message)
        else:
            await consumer.wait_first(consumer.callback(message), consumer.suspend_flow.wait())
        read_offset[tp] = offset
    # One handler call per lane and slice; topics sharing a handler share its batches.
    by_handler: dict[Handler, list[Any]] = {}
    for topic, messages in collected.items():
        by_handler.setdefault(handlers[topic], []).extend(messages)
    for handler, messages in by_handler.items():
        for k in range(0, len(messages), lanes.batch_max):
            part = messages[k:k + lanes.batch_max]
            if not _current(consumer, part):
                return  # a rebalance is under way: the rest is read again
            await handler(part)
            if _current(consumer, part):
                for message in part:
                    consumer.ack(message)
                _note_inbound(consumer, part)
    commit_every = consumer._commit_every
    if commit_every is not None and consumer._n_acked >= commit_every:
        consumer._n_acked = 0
        await consumer.commit()


def _note_inbound(consumer: Any, messages: list[Any]) -> None:
    """Note, once a batch, that the batch's partitions are being processed: Faust's event
    path check reads it, and logs at error every partition with records to read and no
    note in five minutes (its per-message note is one of the monitor calls the worker
    leaves out, and the lane's messages pass through no stream)."""
    monitor = consumer.app.monitor
    if monitor is not None:
        now = time.monotonic()
        for tp in {m.tp for m in messages}:
            monitor.stream_inbound_time[tp] = now


def _current(consumer: Any, messages: list[Any]) -> bool:
    """Whether the messages are all still this consumer's to process: fetched under the
    current generation, with the flow running (it stops while partitions are revoked).

    All or none: Faust commits up to the highest acknowledged offset it can reach from the
    acknowledged ones, so a message left out among acknowledged ones would be committed
    unprocessed. A rebalance under way stops the whole fetch; the partitions' owners read
    the rest again from the committed offsets."""
    if not consumer.flow_active:
        return False
    generation = consumer.app.consumer_generation_id
    return all(m.generation_id == generation for m in messages)
