"""Checkpoints: a partition's state written whole, in slices, so that a rebuild reads from
the last complete one instead of from the beginning of ``ecm.state``.

One is due once the partition has written ``checkpoint_min_bytes``, or twice its last
checkpoint, since its last checkpoint began, or once that began ``checkpoint_max_age_s``
ago, so that the topics' retention never drops the last complete one. The ids to write are
taken when it begins; visits booked after that are in the deltas that book them, and those
dropped before their slice are left out. The first slice carries the pending events whole.
The escalation book goes the same way, a quarter of the budget in records a slice: the
first slice carries the ``ecm.escalations`` offset before which the book held every record
when the checkpoint began, and a replay from the checkpoint reads that topic from there,
after the records of the slices (a record published after its slice is in the topic after
that offset, and the later status wins). Once its last slice is written, the next delta
carries the new base: the offset of the checkpoint's first slice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stream.settings import Settings
from stream.state import keys as K
from stream.state.partition import PartitionState


class Checkpointer:
    """A partition's checkpoint bookkeeping; the runtime tells it what was written."""

    def __init__(self, settings: Settings, now: float) -> None:
        self.settings = settings
        # The ecm.state offset from which a replay rebuilds the partition: the first slice
        # of its last complete checkpoint (0 before its first).
        self.base = 0
        # When that checkpoint began, on the worker clock (the loader sets it from the
        # partition's last message): one is due checkpoint_max_age_s later. A partition
        # without one counts from when it was loaded.
        self.at = now
        self.written = 0  # bytes written to (or, rebuilding, read from) ecm.state since
        self.completed = 0  # checkpoints completed by this partition's worker
        # The ecm.escalations offset after the last record published for the partition:
        # the book holds every record before it.
        self.escalations_next = 0
        self._left: list[str] | None = None  # visit ids the one under way has yet to write
        self._records: list[str] = []  # and escalation ids
        self._start: int | None = None  # offset of its first slice, once acknowledged
        self._from = 0  # ``written`` when it began
        self._last = 0  # bytes of the last complete checkpoint
        self._began = 0.0  # when the one under way began
        # A checkpoint's last slice carries the base before it; the next delta, empty if
        # nothing else changed, carries the new one.
        self._base_unwritten = False

    @property
    def under_way(self) -> bool:
        return self._left is not None

    @property
    def last_bytes(self) -> int:
        """The size of the last complete checkpoint."""
        return self._last

    def restored(self, base: int, at: float | None, read: int, escalations_next: int) -> None:
        """A rebuild read the partition: from the checkpoint at ``base`` (begun at ``at``,
        when its changelog says), ``read`` bytes of it; the book holds every record before
        ``escalations_next``."""
        self.base = base
        if at is not None:
            self.at = at
        self.wrote(read)  # a long replay is due a checkpoint
        self.escalations_next = escalations_next

    def wrote(self, nbytes: int) -> None:
        """Count bytes written to (or, rebuilding, read from) ecm.state."""
        self.written += nbytes

    def published(self, last_offset: int) -> None:
        """Escalation records of the partition were acknowledged up to ``last_offset``."""
        self.escalations_next = max(self.escalations_next, last_offset + 1)

    def base_unwritten(self) -> bool:
        """Whether the next delta must be written (to carry a new base), and clear it."""
        unwritten, self._base_unwritten = self._base_unwritten, False
        return unwritten

    def take(self, budget: int, state: PartitionState, escalations: Mapping[str, Any],
             now: float) -> dict[str, Any] | None:
        """The next slice of the checkpoint under way, at most ``budget`` visits whole, or
        None when none is under way or due. :meth:`slice_written` is told each slice's
        offset once it is written. ``escalations`` are the partition's escalation records,
        by id (its book's)."""
        if budget <= 0:
            return None
        first = self._left is None
        if first:
            s = self.settings
            if (self.written < max(s.checkpoint_min_bytes, 2 * self._last)
                    and now - self.at < s.checkpoint_max_age_s):
                return None
            self._began = now
            self._left = list(state.visits)  # taken from the end; any order will do
            self._records = list(escalations)
            self._start = None
            self._from = self.written
        left, ids = self._left, self._records
        assert left is not None
        visits = []
        while left and len(visits) < budget:
            vs = state.visits.get(left.pop())
            if vs is not None:
                visits.append(vs.checkpoint_doc(state.event_index))
        records = []
        while ids and len(records) < max(1, budget // 4):  # a record is larger than a visit
            record = escalations.get(ids.pop())
            if record is not None:  # else forgotten with its visit since
                records.append(record)
        doc = {K.PARTITION: state.partition, K.VISITS: visits, K.DELETED: [],
               K.PENDING: [p.to_doc() for p in state.pending.values()] if first else None,
               K.BASE: self.base, K.BASE_TIME: self.at, K.ESCALATIONS: records}
        if first:
            doc[K.ESCALATIONS_FROM] = self.escalations_next
            if state.failures:
                doc[K.FAILURES] = state.failures_doc(state.failures)
        return doc

    def slice_written(self, offset: int) -> bool:
        """The slice taken last is in ecm.state, its first message at ``offset``. True when
        that completed the checkpoint: replays start at its first slice from now on."""
        if self._left is None:
            return False
        if self._start is None:
            self._start = offset
        if self._left or self._records:
            return False
        self.base = self._start
        self.at = self._began
        self._last = self.written - self._from
        self.written -= self._from
        self._left = self._start = None
        self.completed += 1
        self._base_unwritten = True
        return True
