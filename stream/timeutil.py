"""RFC 3339 in, aware UTC out.

Internally an instant is a float of seconds since the Unix epoch (UTC): cheap to compare,
to store in arrays and to hand to the kernels. Only the edges see ``datetime``, and only
aware ones.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Annotated

import msgspec

# RFC 3339 with an offset, parsed in C: the parser the one-pass decode uses for a check-in's
# ``occurred_at`` (stream/contract/), so that a record is read the same whichever path
# it takes.
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
_AWARE = msgspec.json.Decoder(AwareDatetime)
_quoted = msgspec.json.encode


def parse_instant(text: object) -> float | None:
    """Seconds since the epoch for an RFC 3339 timestamp with an offset, else None.

    A timestamp without an offset is refused: guessing its zone is how visits that cross
    midnight or a daylight-saving change end up an hour wrong. Digits of a second beyond
    the sixth are rounded to the microsecond.
    """
    if type(text) is not str:
        return None
    try:
        return _AWARE.decode(_quoted(text)).timestamp()
    except msgspec.MsgspecError:
        return None


def to_datetime(instant: float) -> datetime:
    return datetime.fromtimestamp(instant, tz=UTC)


@functools.lru_cache(maxsize=1 << 14)
def format_instant(instant: float) -> str:
    """RFC 3339 in UTC with millisecond precision and a ``Z``."""
    return to_datetime(instant).isoformat(timespec="milliseconds").replace("+00:00", "Z")
