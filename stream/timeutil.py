"""RFC 3339 in, aware UTC out.

Internally an instant is a float of seconds since the Unix epoch (UTC): cheap to compare,
to store in arrays and to hand to the kernels. Only the edges see ``datetime``, and only
aware ones.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime


def parse_instant(text: object) -> float | None:
    """Seconds since the epoch for an RFC 3339 timestamp with an offset, else None.

    A timestamp without an offset is refused: guessing its zone is how visits that cross
    midnight or a daylight-saving change end up an hour wrong.
    """
    if not isinstance(text, str) or len(text) < 20 or len(text) > 40:
        return None
    if "T" not in text and "t" not in text and " " not in text:
        return None
    if text[-1] == "z":
        text = text[:-1] + "Z"
    try:
        parsed = datetime.fromisoformat(text)  # takes "Z" since Python 3.11
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def to_datetime(instant: float) -> datetime:
    return datetime.fromtimestamp(instant, tz=UTC)


@functools.lru_cache(maxsize=1 << 14)
def format_instant(instant: float) -> str:
    """RFC 3339 in UTC with millisecond precision and a ``Z``."""
    return to_datetime(instant).isoformat(timespec="milliseconds").replace("+00:00", "Z")
