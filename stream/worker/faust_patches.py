"""Every change this project makes to Faust's internals, installed once, for the one Faust
version it was written against.

* **The fetch wait.** faust-streaming 0.15 builds its worker consumer with
  ``fetch_max_wait_ms=1500`` written into the code. A broker that answers a fetch only when
  the wait runs out, unless the data is already there when the fetch arrives (the embedded
  broker does this once a fetch spans more than one partition), then delays every hop by
  up to 1.5 s. Kafka itself answers as soon as ``fetch_min_bytes`` (1) have arrived, so a
  shorter wait only costs a few empty fetches a second there. The app's
  ``fetch_max_wait_ms`` (``ECM_FETCH_MAX_WAIT_MS``) is used instead.
* **The batch lane.** An :class:`EcmApp` with lanes drains each fetch through
  :func:`stream.worker.lane.drain` instead of Faust's per-message delivery.
* **A quiet monitor.** :class:`QuietMonitor` is Faust's monitor without its four calls on
  every message (its statistics page is not served; the worker's figures are its
  Prometheus metrics).

:func:`install` refuses another Faust version: these reach into private methods whose
shape only that version is known to have.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import faust
from faust.sensors import Monitor
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from stream.errors import FaustVersionError
from stream.worker.lane import Lanes, drain

FAUST_VERSION = "0.15.3"

log = logging.getLogger(__name__)

_original_create_consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
_original_drain = faust_consumer.Consumer._drain_messages


class EcmApp(faust.App):
    """A Faust app with what the patches read: the fetch wait and the lanes (None: the
    messages take Faust's own path); and a bound on how long it takes to stop."""

    fetch_max_wait_ms: int | None = None
    lanes: Lanes | None = None
    # Once asked to stop, the process ends this many seconds later whatever is still
    # stopping. With the broker out of reach, aiokafka's consumer retries its last commit
    # and its leave-group for a minute or more; what was not committed is read again by
    # whoever owns the partitions next, so nothing is lost by not waiting.
    stop_within_s: float | None = None

    async def on_stop(self) -> None:
        if self.stop_within_s is not None:
            watchdog = threading.Timer(self.stop_within_s, _exit_now, (self.stop_within_s,))
            watchdog.daemon = True
            watchdog.start()
        await super().on_stop()


def _exit_now(after_s: float) -> None:
    log.error("the worker did not stop within %.0f s (the broker out of reach?); exiting "
              "now: what was not committed is read again", after_s)
    logging.shutdown()
    os._exit(0)


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    consumer = _original_create_consumer(self, transport)
    wait = getattr(transport.app, "fetch_max_wait_ms", None)
    if wait is not None:
        # Read by AIOKafkaConsumer.start() when it builds its fetcher.
        consumer._fetch_max_wait_ms = int(wait)
    return consumer


async def _drain_messages(self: Any, fetcher: Any) -> None:
    lanes = getattr(self.app, "lanes", None)
    if not isinstance(lanes, Lanes):
        await _original_drain(self, fetcher)
        return
    await drain(self, fetcher, lanes)


def install() -> None:
    """Install the patches (idempotent); an app that is not an :class:`EcmApp` with those
    attributes set behaves as Faust's own."""
    if faust.__version__ != FAUST_VERSION:
        raise FaustVersionError(f"stream/worker/faust_patches.py patches faust-streaming "
                       f"{FAUST_VERSION}, and {faust.__version__} is installed")
    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer
    faust_consumer.Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]


class QuietMonitor(Monitor):
    """Faust's monitor without its four calls on every message (``on_message_in``,
    ``on_stream_event_in``, ``on_stream_event_out``, ``on_message_out``), about 4% of a
    worker's time with one check-in per message; of them only the stream's inbound time
    is noted, which Faust's event path check reads. Commits, sends, rebalances and the
    offsets the consumer tracks are still recorded as before."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        # Kept: Faust's event path check reads it (a stream with nothing noted in five
        # minutes is logged at error as stuck).
        self.stream_inbound_time[tp] = time.monotonic()

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any,
                            state: Any = None) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass
