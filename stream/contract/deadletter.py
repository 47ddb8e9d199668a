"""Dead letters: what is written to ``ecm.deadletter`` for a rejected record, and why.

Every reason a record can be rejected for is named here once; the dead-letter schema
(``schemas/deadletter.schema.json``) lists the same set, as a test holds.
"""

from __future__ import annotations

import base64
from typing import Any

from stream.contract.records import SCHEMA_VERSION, Rejection
from stream.timeutil import format_instant

# Why a record was rejected, by the stage that decides it.
REASONS = (
    # the message (router): it is not a JSON object, or an array of them, within the bounds
    # (stream/contract/bounds.py)
    "invalid_utf8", "invalid_json", "not_an_object", "message_too_large", "value_too_large",
    "too_deeply_nested",
    # a record's fields (router or detector: stream/contract/checks.py)
    "missing_field", "wrong_type", "invalid_value", "invalid_time", "invalid_coordinates",
    "end_before_start", "visit_too_long",
    # an event against the partition's state (detector: stream/rules/matching.py)
    "duplicate_event", "unknown_visit", "client_mismatch", "clock_in_future", "clock_too_old",
    # an action against its case (detector: stream/rules/cases.py)
    "duplicate_action", "unknown_escalation", "not_allowed",
    # an ecm.work message the detector cannot read (a bug or a foreign producer)
    "invalid_work_message",
)

# A dead letter keeps at most this much of the rejected bytes (the size is recorded), so a
# huge bad message still fits a Kafka message once base64-encoded.
MAX_RAW_BYTES = 256 * 1024


def deadletter_doc(rejection: Rejection, now: float, stage: str) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "reason": rejection.reason,
        "detail": rejection.detail,
        "stage": stage,
        "source": rejection.source.as_dict(),
        "raw": base64.b64encode(rejection.raw[:MAX_RAW_BYTES]).decode("ascii"),
        "raw_size": len(rejection.raw),
        "raw_truncated": len(rejection.raw) > MAX_RAW_BYTES,
        "rejected_at": format_instant(now),
    }


def deadletter_key(rejection: Rejection) -> bytes:
    s = rejection.source
    return f"{s.topic}:{s.partition}:{s.offset}:{s.index}".encode()
