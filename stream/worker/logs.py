"""Kafka client logs at a rate an operator can read.

While the broker is out of reach, aiokafka logs every failed connection and fetch at error:
thousands of lines a minute, per worker, that bury the worker's own account of the outage.
:class:`Repeats` lets each distinct message through once per ``every_s`` and says how many
of it were held back when it next lets it through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

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


def quiet_kafka_client(every_s: float = REPEAT_EVERY_S) -> None:
    """Put one :class:`Repeats` on every aiokafka logger this process has."""
    repeats = Repeats(every_s)
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "aiokafka"]
    for name in ["aiokafka", *names]:
        logging.getLogger(name).addFilter(repeats)
