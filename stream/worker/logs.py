"""The worker's logs: at a rate an operator can read, and as JSON for a log shipper.

While the broker is out of reach, aiokafka logs every failed connection and fetch at error:
thousands of lines a minute, per worker, that bury the worker's own account of the outage.
:class:`Repeats` lets each distinct message through once per ``every_s`` and says how many
of it were held back when it next lets it through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

# Each distinct message from the Kafka client once per this many seconds at most.
REPEAT_EVERY_S = 10.0


class Repeats(logging.Filter):
    def __init__(self, every_s: float = REPEAT_EVERY_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s = every_s
        self._monotonic = monotonic
        self._last: dict[tuple[str, object], float] = {}
        self._held: dict[tuple[str, object], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        now = self._monotonic()
        if now - self._last.get(key, float("-inf")) < self.every_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like it held back in the last " \
                         f"{self.every_s:.0f} s)"
        return True


# The read marks' probe assigns its consumer the partitions whose end moved, several times
# a second, and aiokafka logs every assignment at info. Faust logs the worker's own
# subscription besides, as a table.
_CHATTY = ("aiokafka.consumer.subscription_state",)


def quiet_kafka_client(every_s: float = REPEAT_EVERY_S) -> None:
    """Put one :class:`Repeats` on every aiokafka logger this process has, and keep the
    chatty ones to warnings."""
    repeats = Repeats(every_s)
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "aiokafka"]
    for name in ["aiokafka", *names]:
        logging.getLogger(name).addFilter(repeats)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)


class JsonFormatter(logging.Formatter):
    """One JSON object a line (``ECM_LOG_FORMAT=json``): ``ts`` (RFC 3339, UTC), ``level``,
    ``logger``, ``message``, ``pid``, and ``exc`` with the traceback of an exception. The
    worker logs no per-record line at info, and no ids or personal data at info."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage(), "pid": record.process}
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def logging_config(log_format: str, level: str) -> dict[str, Any] | None:
    """The worker's logging configuration for ``ECM_LOG_FORMAT``: None for Faust's own
    (text, coloured on a terminal), else JSON lines on stderr."""
    if log_format != "json":
        return None
    name = {"crit": "CRITICAL", "warn": "WARNING"}.get(level, level.upper())
    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"json": {"()": JsonFormatter}},
            "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json",
                                     "level": name}},
            "root": {"level": name, "handlers": ["default"]}}
