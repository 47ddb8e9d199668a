"""SASL for real: the clients' own handshakes (aiokafka's and kafka-python's) with PLAIN,
SCRAM-SHA-256 and SCRAM-SHA-512 from the settings, against a front that requires them
(tests/sasl.py says why the embedded broker's own flag cannot be used); a wrong password
and an unknown user are refused. Then a worker, the topics' admin client, a producer and a
reader through SASL_SSL: TLS (stunnel) and SCRAM-SHA-512 with the password from a file."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError as SyncKafkaError

from stream.broker import EmbeddedBroker, free_port
from stream.security import connection
from stream.topics import ensure_topics
from tests.cluster import missed_visit_escalated
from tests.sasl import MECHANISMS, SaslFront
from tests.tls import Certificates, Stunnel

pytestmark = pytest.mark.integration

USERS = {"ecm": "a-long-secret-1", "desk": "another-secret"}


async def _round_trip(settings, topic: str, value: bytes) -> bytes:
    """Write a record with aiokafka's producer and read it back with its consumer."""
    producer = AIOKafkaProducer(**connection(settings), request_timeout_ms=5000)
    consumer = AIOKafkaConsumer(topic, **connection(settings), group_id=None,
                                auto_offset_reset="earliest", request_timeout_ms=5000)
    try:
        await asyncio.wait_for(producer.start(), 10)
        await asyncio.wait_for(producer.send_and_wait(topic, value), 10)
        await asyncio.wait_for(consumer.start(), 10)
        return (await asyncio.wait_for(consumer.getone(), 10)).value
    finally:
        await producer.stop()
        await consumer.stop()


def _sync_round_trip(settings, topic: str, value: bytes) -> set[bytes]:
    """The same with kafka-python's clients (the simulator's, the report's, watch's)."""
    producer = KafkaProducer(**connection(settings), request_timeout_ms=5000)
    producer.send(topic, value).get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(topic, **connection(settings), group_id=None,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    try:
        return {m.value for m in consumer}
    finally:
        consumer.close()


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_each_mechanism_authenticates_and_a_wrong_password_is_refused(settings, mechanism):
    plain_port, sasl_port = free_port(), free_port()
    with EmbeddedBroker(plain_port, advertised_port=sasl_port), \
            SaslFront(sasl_port, plain_port, USERS) as front:
        s = settings.with_(broker=f"127.0.0.1:{sasl_port}", security_protocol="SASL_PLAINTEXT",
                           sasl_mechanism=mechanism, sasl_username="ecm",
                           sasl_password=USERS["ecm"])
        topic = f"{settings.topic_roster}.{mechanism.lower()}"
        assert asyncio.run(_round_trip(s, topic, b"through aiokafka")) == b"through aiokafka"
        assert _sync_round_trip(s, topic, b"through kafka-python") == {
            b"through aiokafka", b"through kafka-python"}
        assert {m for m, _ in front.authenticated} == {mechanism}
        assert {u for _, u in front.authenticated} == {"ecm"}
        for wrong in (s.with_(sasl_password="not-the-password"),
                      s.with_(sasl_username="nobody")):
            refused = front.refused
            with pytest.raises((KafkaError, SyncKafkaError, TimeoutError, OSError)):
                asyncio.run(_round_trip(wrong, topic, b"x"))
            assert front.refused > refused
        # A client without SASL is refused too: nothing passes before authentication.
        with pytest.raises((KafkaError, TimeoutError, OSError)):
            asyncio.run(_round_trip(s.with_(security_protocol="PLAINTEXT"), topic, b"x"))


def test_a_worker_over_sasl_ssl_with_scram(settings, spawn_worker, tmp_path):
    certs = Certificates.make(tmp_path)
    secret = tmp_path / "kafka-password"
    secret.write_text(USERS["ecm"] + "\n")
    plain_port, sasl_port, tls_port = free_port(), free_port(), free_port()
    changes = {"broker": f"127.0.0.1:{tls_port}", "security_protocol": "SASL_SSL",
               "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "ecm",
               "sasl_password_file": str(secret), "ssl_cafile": str(certs.ca)}
    with EmbeddedBroker(plain_port, advertised_port=tls_port), \
            SaslFront(sasl_port, plain_port, USERS) as front, \
            Stunnel(tls_port, sasl_port, certs, tmp_path, mutual=False):
        s = settings.with_(**changes)
        ensure_topics(s)
        worker = spawn_worker("sasl", **changes)
        assert missed_visit_escalated(s, worker) == ["v-missed:late", "v-missed:missed"]
        assert len(front.authenticated) >= 4  # the worker's clients, the producer, the reader
        assert {m for m, _ in front.authenticated} == {"SCRAM-SHA-512"}
        assert USERS["ecm"] not in worker.log()
