"""Fixtures shared by the integration and chaos tests: one embedded broker per session,
fresh topics and consumer group per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stream.broker import EmbeddedBroker, free_port
from stream.settings import Settings
from stream.topics import ensure_topics
from tests.cluster import WorkerProcess

_run = itertools.count()


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """Bootstrap address of the broker the integration tests run against.

    ``ECM_TEST_BROKER`` chooses it: unset or ``embedded``, the embedded broker (the default,
    and what CI runs); ``testcontainers``, Apache Kafka in Docker through testcontainers
    (where a Docker engine runs); ``HOST:PORT``, an existing cluster. A broker that cannot
    start fails the tests: it never skips them.
    """
    choice = os.environ.get("ECM_TEST_BROKER", "embedded")
    if choice == "embedded":
        with EmbeddedBroker(free_port()) as b:
            yield b.bootstrap
    elif choice == "testcontainers":
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
    else:
        yield choice


@pytest.fixture
def settings(broker: str, request: pytest.FixtureRequest) -> Settings:
    tag = f"t{os.getpid()}-{next(_run)}"
    s = Settings(broker=broker, app_id=f"ecm-{tag}", partitions=4,
                 topic_roster=f"{tag}.roster", topic_events=f"{tag}.events",
                 topic_escalations=f"{tag}.escalations", topic_deadletter=f"{tag}.deadletter",
                 topic_visits=f"{tag}.visits",
                 topic_work=f"{tag}.work", topic_state=f"{tag}.state",
                 topic_actions=f"{tag}.actions",
                 unscheduled_grace_s=3.0, sweep_interval_s=0.5, log_level="info")
    ensure_topics(s)
    return s


@pytest.fixture
def spawn_worker(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``ecm worker`` processes in the test's consumer group; all stop at the end."""
    started: list[WorkerProcess] = []

    def spawn(name: str, **changes: object) -> WorkerProcess:
        datadir = changes.pop("datadir", None)
        w = WorkerProcess(settings.with_(**changes), tmp_path, name, datadir).start()
        started.append(w)
        return w

    yield spawn
    for w in started:
        w.stop()
