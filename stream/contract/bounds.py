"""The contract's bounds: how large, how deep and how far in time an input may be.

Every bound is far beyond what a real gateway sends, and well inside what the worker can
carry on: a record the contract accepts always re-encodes, fits the internal topics, and
has instants whose deadlines compute. What exceeds a bound is dead-lettered with its reason
(``message_too_large``, ``value_too_large``, ``too_deeply_nested``, ``invalid_time``).

The one-pass decoder never carries a field it does not know: a message validated from its
bytes is bounded by its size and its known fields' types. Records decoded as objects (an
unkeyed producer's, or any the one-pass decoder leaves to the full checks) travel on as
those objects, so every value in them, unknown fields included, is held to the bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def _year_start(year: int) -> float:
    return datetime(year, 1, 1, tzinfo=UTC).timestamp()


@dataclass(frozen=True, slots=True)
class Bounds:
    # A larger input message is rejected whole, before it is decoded. Below
    # ECM_MAX_MESSAGE_BYTES with room for a record's envelope in ecm.work, so that a
    # message's one record always fits a message the worker writes.
    max_input_bytes: int = 768 * 1024
    max_string_bytes: int = 64 * 1024  # characters of any one string
    max_items: int = 10_000  # of any one array or object
    max_depth: int = 32  # arrays and objects nested in a record
    # Instants (scheduled start and end, occurred_at) from the start of the first year to
    # the end of the last: a deadline computed from one is always a valid date.
    earliest_year: int = 2000
    latest_year: int = 2100
    earliest: float = field(init=False)  # epoch seconds: the first instant accepted
    latest: float = field(init=False)  # and the first after the last

    def __post_init__(self) -> None:
        object.__setattr__(self, "earliest", _year_start(self.earliest_year))
        object.__setattr__(self, "latest", _year_start(self.latest_year + 1))

    def instant_in_range(self, instant: float) -> bool:
        return self.earliest <= instant < self.latest

    @classmethod
    def from_settings(cls, settings: Any) -> Bounds:
        return cls(settings.max_input_bytes, settings.max_string_bytes, settings.max_items,
                   settings.max_depth, settings.earliest_year, settings.latest_year)

    def exceeded(self, obj: Any) -> tuple[str, str] | None:
        """``(reason, detail)`` for the first bound a decoded record exceeds, else None.
        Iterative, so that nesting deeper than Python's recursion limit is a rejection, not
        an error."""
        max_str, max_items, max_depth = self.max_string_bytes, self.max_items, self.max_depth
        stack: list[tuple[Any, int]] = [(obj, 1)]
        while stack:
            value, depth = stack.pop()
            kind = type(value)
            if kind is str:
                if len(value) > max_str:
                    return ("value_too_large",
                            f"a string of {len(value)} characters; at most {max_str}")
                continue
            if kind is dict:
                items = value.values()
                for key in value:
                    if len(key) > max_str:
                        return ("value_too_large",
                                f"a key of {len(key)} characters; at most {max_str}")
            elif kind is list:
                items = value
            else:
                continue  # a number, a boolean or null: orjson reads only finite numbers
            if len(value) > max_items:
                return "value_too_large", f"{len(value)} items; at most {max_items}"
            if depth > max_depth:
                return "too_deeply_nested", f"nested deeper than {max_depth}"
            for item in items:
                t = type(item)
                if t is dict or t is list or (t is str and len(item) > max_str):
                    stack.append((item, depth + 1))
        return None
