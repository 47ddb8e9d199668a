"""Durations: ``shortened`` and ``extended``.

From the late and missed visits policy (6.1) and the commissioners' practice: a visit is
shortened when a worker's stay ends the threshold (15 minutes by default, or the visit's
own ``short_long_after_s``) or more before the scheduled duration, and extended when it
runs that much over. Judged once a worker has both checked in and checked out.
"""

from __future__ import annotations

from stream.contract.records import Escalation
from stream.rules.book import EscalationBook
from stream.settings import Settings
from stream.state.visit import VisitState


class Durations:
    def __init__(self, settings: Settings, book: EscalationBook) -> None:
        self.book = book
        self._threshold_s = float(settings.short_long_after_s)

    def judge(self, vs: VisitState, worker: str, now: float) -> list[Escalation]:
        """A worker has checked in and out: what their stay raises."""
        v = vs.visit
        t_in = vs.checkins[worker].occurred
        t_out = vs.checkouts[worker].occurred
        if t_out < t_in:
            return []  # a device clock is wrong; the check-in and check-out stand as evidence
        scheduled = v.end - v.start
        actual = t_out - t_in
        threshold = v.short_long_after_s or self._threshold_s
        evidence = {"worker_id": worker, "checked_in_at": t_in, "checked_out_at": t_out,
                    "scheduled_duration_s": scheduled, "actual_duration_s": round(actual, 1),
                    "difference_s": round(actual - scheduled, 1)}
        if actual <= scheduled - threshold:
            return self.book.open(vs, "shortened", t_out, now, evidence)
        if actual >= scheduled + threshold:
            return self.book.open(vs, "extended", t_in + scheduled + threshold, now, evidence)
        return []
