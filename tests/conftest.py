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
def broker() -> Iterator[EmbeddedBroker]:
    # In CI a missing broker is a failure, never a skip: the fixture raises.
    with EmbeddedBroker(free_port()) as b:
        yield b


@pytest.fixture
def settings(broker: EmbeddedBroker, request: pytest.FixtureRequest) -> Settings:
    tag = f"t{os.getpid()}-{next(_run)}"
    s = Settings(broker=broker.bootstrap, app_id=f"ecm-{tag}", partitions=4,
                 topic_roster=f"{tag}.roster", topic_events=f"{tag}.events",
                 topic_escalations=f"{tag}.escalations", topic_deadletter=f"{tag}.deadletter",
                 topic_work=f"{tag}.work", topic_state=f"{tag}.state",
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
