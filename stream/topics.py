"""Creating the project's topics, and the partitioning the router and producers share."""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Iterable
from typing import Any

from stream.contract import routing_key
from stream.security import connection
from stream.settings import Settings

log = logging.getLogger(__name__)


def partition_for(client_id: str, partitions: int) -> int:
    """The work partition of a client: stable across processes, runs and languages."""
    return zlib.crc32(client_id.encode("utf-8")) % partitions


def by_partition(records: Iterable[dict[str, Any]], partitions: int
                 ) -> dict[int | None, list[dict[str, Any]]]:
    """Records grouped as a producer that keys by client sends them: by the partition their
    ``client_id`` hashes to, so they skip the ``ecm.work`` hop. A record without a usable
    ``client_id`` goes under None, for the producer's own partitioner (the worker rejects it)."""
    groups: dict[int | None, list[dict[str, Any]]] = {}
    for r in records:
        key = routing_key(r) if isinstance(r, dict) else None
        groups.setdefault(None if key is None else partition_for(key, partitions), []).append(r)
    return groups


_VISITS_CONFIG = {"cleanup.policy": "compact", "retention.ms": "-1"}


def _retained(settings: Settings) -> dict[str, str]:
    """The configuration of the topics a partition is rebuilt from."""
    ms = round(settings.state_retention_s * 1000) if settings.state_retention_s > 0 else -1
    return {"retention.ms": str(ms), "retention.bytes": "-1"}


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create the project's topics if missing; return the names created.

    The work, state and escalation topics must have exactly ``settings.partitions``
    partitions: a visit's work, state and escalations share a partition number. The state
    and escalation topics are what a partition is rebuilt from, so they keep their records
    for ``state_retention_s`` (by time, never by size): at least twice the checkpoint age,
    so that a partition's last complete checkpoint, and the escalation records after the
    offset it names, are always there (docs/architecture.md, "Checkpoints").
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    names = [*settings.input_topics, settings.topic_work,
             settings.topic_state, settings.topic_escalations, settings.topic_deadletter,
             *([settings.topic_runs] if settings.runs else []),
             *([settings.topic_visits] if settings.visit_records else [])]
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(**connection(settings),
                                     client_id=f"{settings.app_id}-admin",
                                     request_timeout_ms=10_000)
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        created = []
        for name in names:
            if name in existing:
                continue
            # ecm.runs is the run partitions' changelog (stream/worker/runs.py).
            keep = name in (settings.topic_state, settings.topic_escalations,
                            settings.topic_runs)
            # ecm.visits is the record the care documents ask for: a visit's last record
            # is kept for good (compacted), so a review of any four weeks is a query.
            configs = (_retained(settings) if keep else _VISITS_CONFIG
                       if name == settings.topic_visits else {})
            try:
                admin.create_topics([NewTopic(name, settings.partitions, 1,
                                              topic_configs=configs)])
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        aligned = (settings.topic_work, settings.topic_state, settings.topic_escalations,
                   *([settings.topic_visits] if settings.visit_records else []))
        for desc in admin.describe_topics(list(aligned)):
            count = len(desc.get("partitions", []))
            if count and count != settings.partitions:
                log.error("topic %s has %d partitions; ECM_PARTITIONS is %d",
                          desc.get("topic"), count, settings.partitions)
        return created
    finally:
        admin.close()
