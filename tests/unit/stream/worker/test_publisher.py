"""The publish order, against a producer whose acknowledgements the test gives by hand:
escalations and dead letters are acknowledged before any state is written, and a
checkpoint slice is complete only once its offset is known."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from stream.contract import Rejection, Source
from stream.rules.detector import Output
from stream.worker.metrics import Metrics
from stream.worker.publisher import Publisher
from tests.factories import T0, event, visit
from tests.unit.stream.harness import Harness


class _Meta:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class Broker:
    """Producers that hold every send until :meth:`ack`, and number the records per
    partition; a batch is acknowledged as one, with its first record's offset."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, int | None, bytes]] = []  # compression, topic, ...
        self.unacked: list[tuple[asyncio.Future[Any], str, int | None, int]] = []
        self.ends: dict[tuple[str, int | None], int] = {}

    async def start(self, compression: str) -> Any:
        broker = self

        class Batch(list):  # type: ignore[type-arg]
            def append(self, *, key: bytes | None, value: bytes, timestamp: Any) -> Any:
                super().append((key, value))
                return True

        class Producer:
            def create_batch(self) -> Batch:
                return Batch()

            async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> Any:
                future = asyncio.get_running_loop().create_future()
                for _, value in batch:
                    broker.sent.append((compression, topic, partition, value or b""))
                broker.unacked.append((future, topic, partition, len(batch)))
                return future

            async def send(self, topic: str, value: bytes | None = None,
                           key: bytes | None = None, partition: int | None = None) -> Any:
                return await self.send_batch(Batch([(key, value)]), topic,
                                             partition=partition)  # type: ignore[arg-type]

            async def stop(self) -> None:
                pass

        return Producer()

    def topics_unacked(self) -> list[str]:
        return [topic for _, topic, _, n in self.unacked for _ in range(n)]

    def ack(self) -> None:
        for future, topic, partition, n in self.unacked:
            base = self.ends.get((topic, partition), 0)
            self.ends[(topic, partition)] = base + n
            if not future.done():
                future.set_result(_Meta(base))
        self.unacked = []


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def _busy_partition() -> tuple[Harness, Output]:
    """A partition whose sweep raised two escalations and whose batch rejected a record."""
    h = Harness(start=T0 - 600)
    h.roster(visit("v1"), visit("v2", client_id="c2"))
    out = h.at(T0 + 1000)  # both late
    out.rejections.append(Rejection("invalid_json", "x", b"{", Source("ecm.events", 0, 9)))
    return h, out


def test_escalations_and_dead_letters_are_acknowledged_before_any_state_is_written():
    async def run() -> None:
        h, out = _busy_partition()
        assert len(out.escalations) == 2
        broker = Broker()
        publisher = Publisher(h.settings, h.clock, Metrics(), broker.start)
        task = asyncio.ensure_future(publisher.publish([(h.detector, out)], {}))
        await _settle()
        assert sorted(broker.topics_unacked()) == [
            "ecm.deadletter", "ecm.escalations", "ecm.escalations"]
        assert not task.done()
        broker.ack()
        await _settle()
        # Only now the state delta, on the state producer (compressed).
        assert broker.topics_unacked() == ["ecm.state"]
        assert broker.sent[-1][:3] == ("zstd", "ecm.state", 0)
        assert not task.done()
        broker.ack()
        await task
        # The book holds every record before the offset after the last one published.
        assert h.detector.checkpointer.escalations_next == 2
        keys = [orjson.loads(v)["escalation_id"] for c, t, _, v in broker.sent
                if t == "ecm.escalations"]
        assert sorted(keys) == ["v1:late", "v2:late"]
        await publisher.close()

    asyncio.run(run())


def test_a_checkpoint_completes_when_its_last_slice_s_offset_is_known():
    async def run() -> None:
        h = Harness(start=T0 - 600, checkpoint_max_age_s=3000)
        h.roster(*[visit(f"v{i}", client_id=f"c{i}") for i in range(3)])
        h.events(event(at=T0 - 500, visit_id="v1", client_id="c1"))
        broker = Broker()
        metrics = Metrics()
        publisher = Publisher(h.settings, h.clock, metrics, broker.start)
        cp = h.detector.checkpointer
        for _ in range(2):  # the first publish writes the delta; the next, an hour later,
            task = asyncio.ensure_future(publisher.publish([(h.detector, Output())], {}))
            while not task.done():
                await _settle()
                broker.ack()
            await task
            h.clock.set(h.clock.now() + 3600)  # a checkpoint by age
        assert cp.completed == 1 and metrics.registry.get_sample_value(
            "ecm_state_checkpoints_total") == 1
        # The base is the checkpoint's one slice: the message after the delta.
        assert cp.base == 1
        await publisher.close()

    asyncio.run(run())


def test_a_broker_out_of_reach_is_waited_for_in_order_with_nothing_doubled():
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

    async def run() -> None:
        h, out = _busy_partition()
        broker = Broker()
        refusals = [KafkaConnectionError(), None, KafkaConnectionError()]
        metrics = Metrics()

        async def start(compression: str) -> Any:
            producer = await broker.start(compression)
            send_batch = producer.send_batch

            async def flaky(batch: Any, topic: str, **kw: Any) -> Any:
                if refusals:
                    refused = refusals.pop(0)
                    if refused is not None:
                        raise refused
                future = await send_batch(batch, topic, **kw)
                if topic == "ecm.state" and not getattr(flaky, "timed_out", False):
                    flaky.timed_out = True  # type: ignore[attr-defined]
                    future.set_exception(KafkaTimeoutError())  # sent, never acknowledged
                return future

            producer.send_batch = flaky
            return producer

        publisher = Publisher(h.settings, h.clock, metrics, start)
        task = asyncio.ensure_future(publisher.publish([(h.detector, out)], {}))
        while not task.done():
            await asyncio.sleep(0.05)
            broker.unacked = [u for u in broker.unacked if not u[0].done()]
            broker.ack()
        await task
        assert publisher.reachable
        assert metrics.registry.get_sample_value("ecm_publish_retries_total") >= 2
        escalations = [orjson.loads(v)["escalation_id"] for _, t, _, v in broker.sent
                       if t == "ecm.escalations"]
        # Each escalation acknowledged once; the state after them, sent again once.
        assert sorted(set(escalations)) == ["v1:late", "v2:late"]
        assert escalations.count("v1:late") == 1
        topics = [t for _, t, _, _ in broker.sent]
        assert topics.index("ecm.state") > max(i for i, t in enumerate(topics)
                                               if t != "ecm.state")
        assert topics.count("ecm.state") == 2
        await publisher.close()

    asyncio.run(run())


def test_a_replayed_rejection_is_dead_lettered_once_and_each_to_its_stage_s_partition():
    """Replays decide a rejection again: its dead letter (keyed by its source position)
    is not written twice, whether the key was sent by this worker or read back after an
    assignment; the router writes to its input partition's number, a detector to its own."""

    async def run() -> None:
        h = Harness()
        broker = Broker()
        metrics = Metrics()
        publisher = Publisher(h.settings, h.clock, metrics, broker.start)
        bad = [Rejection("invalid_json", "x", b"{", Source("ecm.events", 3, o)) for o in (7, 8)]
        read_back = asyncio.get_running_loop().create_future()
        publisher.read_back(read_back)
        task = asyncio.ensure_future(publisher.deadletters(bad, "router"))
        await _settle()
        assert broker.sent == []  # waits for what was written before the assignment
        read_back.set_result({b"ecm.events:3:7:0"})
        await _settle()
        broker.ack()
        await task
        assert [(t, p) for _, t, p, _ in broker.sent] == [("ecm.deadletter", 3)]
        assert orjson.loads(broker.sent[0][3])["source"]["offset"] == 8
        # The same two again (a replay), and a detector's own.
        out = Output()
        out.rejections = [*bad, Rejection("duplicate_event", "y", b"{}",
                                          Source("ecm.events", 1, 4))]
        task = asyncio.ensure_future(publisher.publish([(h.detector, out)], {}))
        await _settle()
        broker.ack()
        await _settle()
        broker.ack()
        await task
        assert [(t, p) for _, t, p, _ in broker.sent[1:2]] == [("ecm.deadletter", 0)]
        assert len([s for s in broker.sent if s[1] == "ecm.deadletter"]) == 2
        # One at the first send (read back), two at the replay.
        assert metrics.registry.get_sample_value("ecm_deadletters_replayed_total") == 3

    asyncio.run(run())
