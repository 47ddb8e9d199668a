"""The worker's garbage collector and C heap: paused while a batch is applied, long-lived
state frozen out of its sight, freed pages handed back.

A worker holds millions of long-lived objects (a million visits is about ten million).
CPython's full collections walk all of them, pausing the event loop for a second or more
and doubling the cost of every record on the hot path. So:

* automatic collection is off while a batch is applied (a batch decodes its records up
  front and holds them until it ends, and every collection during it walked them again);
* after a roster load or a partition restore the new objects are state that lives for a
  day: everything not yet frozen is collected once, then frozen (``gc.freeze``);
* the C allocator hands freed pages back to the system at most every few seconds, once
  records were applied (decoding large messages frees large buffers).

One :class:`Heap` per worker process: the runtime owns it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import time
from collections.abc import Callable, Iterator
from typing import Any

# Trimming walks the heap (a few ms for a heap of several hundred MB): at most this often.
TRIM_EVERY_S = 5.0
# A young collection every this many allocations (Python's default is 700): a batch
# allocates tens of thousands of short-lived objects, and each collection walks the
# survivors.
_YOUNG_THRESHOLD = 50_000


def _libc_malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; other C libraries go without
    except (OSError, AttributeError):
        return None


class Heap:
    def __init__(self, trim: Callable[[int], Any] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._trim = _libc_malloc_trim() if trim is None else trim
        self._monotonic = monotonic
        self._last_trim = float("-inf")
        self._trim_pending = False
        self._paused = 0

    @staticmethod
    def tune() -> None:
        """Collect the young generation less often (see ``_YOUNG_THRESHOLD``)."""
        gc.set_threshold(_YOUNG_THRESHOLD, 20)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No automatic collection while a batch is applied; the batch ends with
        :meth:`settle` when it loaded roster records, else the collector resumes. Nested
        uses (both stages' batches interleave at their awaits) resume it when the last one
        ends."""
        if self._paused == 0:
            gc.disable()
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1
            if self._paused == 0:
                gc.enable()

    def settle(self) -> None:
        """Move the objects alive now out of the collector's sight: everything not yet
        frozen is collected first, so that no garbage cycle is frozen with it (a full
        collection walks only what is not frozen), then frozen, and freed pages go back."""
        gc.collect()
        gc.freeze()
        self.changed()
        self.trim_if_due()

    def changed(self) -> None:
        """Records were applied: decoding them freed memory that can go back."""
        self._trim_pending = True

    def trim_if_due(self) -> None:
        """Hand the C heap's free pages back to the system if records were applied since
        the last time, at most every ``TRIM_EVERY_S``. The sweep timer calls this."""
        now = self._monotonic()
        if self._trim_pending and self._trim is not None and now - self._last_trim >= TRIM_EVERY_S:
            self._last_trim = now
            self._trim_pending = False
            self._trim(0)
