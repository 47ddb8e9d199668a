"""A worker, the topics' admin client, a producer and a reader connect to the broker through
mutual TLS only, with certificates made in the test, and a missed visit is still
escalated. A client without TLS, or without a client certificate, is refused at the same
port."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream.broker import EmbeddedBroker, free_port
from stream.security import connection
from stream.topics import ensure_topics
from tests.cluster import missed_visit_escalated
from tests.tls import Certificates, Stunnel

pytestmark = pytest.mark.integration


def _refused(settings) -> bool:
    """Whether a producer with these settings fails to reach the broker."""
    async def attempt() -> bool:
        producer = AIOKafkaProducer(**connection(settings), request_timeout_ms=3000)
        try:
            await asyncio.wait_for(producer.start(), 8)
            await asyncio.wait_for(producer.send_and_wait("tls-probe", b"x"), 8)
        except (KafkaError, OSError, TimeoutError):
            return True
        finally:
            await producer.stop()
        return False
    return asyncio.run(attempt())


def test_worker_over_mutual_tls(settings, spawn_worker, tmp_path):
    certs = Certificates.make(tmp_path)
    tls_port, plain_port = free_port(), free_port()
    tls = {"security_protocol": "SSL", "ssl_cafile": str(certs.ca),
           "ssl_certfile": str(certs.client_cert), "ssl_keyfile": str(certs.client_key),
           "broker": f"127.0.0.1:{tls_port}"}
    with EmbeddedBroker(plain_port, advertised_port=tls_port), \
            Stunnel(tls_port, plain_port, certs, tmp_path) as stunnel:
        s = settings.with_(**tls)
        ensure_topics(s)
        worker = spawn_worker("tls", **tls)
        got = missed_visit_escalated(s, worker)
        assert got == ["v-missed:late", "v-missed:missed"], got
        assert stunnel.connections() >= 3  # the worker's, the producer's, the reader's
        # The same port refuses a client without TLS, and one without a certificate.
        assert _refused(s.with_(security_protocol="PLAINTEXT", ssl_cafile="",
                                ssl_certfile="", ssl_keyfile=""))
        assert _refused(s.with_(ssl_certfile="", ssl_keyfile=""))
        assert "Traceback" not in worker.log()
