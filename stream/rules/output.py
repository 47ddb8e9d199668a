"""What a batch or a sweep decides: escalation records to publish, rejections to
dead-letter, and counts for the metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream.contract import Codec, Rejection, Source
from stream.contract.records import Escalation, VisitRecord


@dataclass(slots=True)
class Output:
    escalations: list[Escalation] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    accepted: dict[str, int] = field(
        default_factory=lambda: {"roster": 0, "event": 0, "action": 0})
    replayed: int = 0  # events seen again from the same source position: no-ops
    kernel_s: float = 0.0  # time in the geofence kernel
    # Per escalation opened, (kind, detected - deadline); per one resolved, (kind, resolved -
    # detected): seconds on the worker clock, for the metrics.
    latencies: list[tuple[str, float]] = field(default_factory=list)
    resolutions: list[tuple[str, float]] = field(default_factory=list)
    # Per case stage first met, (stage, priority, seconds from detection); per breach,
    # (stage, priority): stream/rules/cases.py.
    case_timings: list[tuple[str, str, float]] = field(default_factory=list)
    case_breaches: list[tuple[str, str]] = field(default_factory=list)
    # What the worker runs need of this batch, for ecm.runs (stream/rules/runfacts.py).
    runs: list[list[Any]] = field(default_factory=list)
    # The records of the visits settled or changed since settling, for ecm.visits
    # (stream/rules/visit_records.py).
    visits: list[VisitRecord] = field(default_factory=list)


def reject(codec: Codec, failure: tuple[str, str], raw: dict[str, Any] | tuple[bytes, int],
           source: Source) -> Rejection:
    """A rejection of a record, with its bytes: its object, re-encoded."""
    reason, detail = failure
    return Rejection(reason, detail, codec.raw_bytes(raw), source)
