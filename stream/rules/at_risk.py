"""``at_risk``: a visit its workers' runs predict they will reach after its late deadline,
raised before that deadline, and the expected arrival that every ``late`` and ``missed``
carries (docs/rules.md, "Worker runs").

The late-visits policy (5.4) asks that the person "be contacted immediately to inform them
of the late visit, and also of the expected time of arrival of the Care Worker", and that
other carers be allocated "to reduce the lateness of the visit to a minimum": the route of
``at_risk`` is ``inform_and_reallocate``.

The predictions come from each worker's run partition (stream/rules/runs.py) and are held
on the visit, one per rostered worker. The visit is expected when its last absent worker
is: a double-up waits for both. Where a worker has no prediction, the visit has none
either: an ETA is never invented.

``at_risk`` is raised when the expected arrival is past the late deadline, while that
deadline is still ahead and nobody has checked in, for the visit the worker goes to next
(a prediction whose chain starts at the worker's own check-in or check-out, not at a visit
predicted before it): further down a run, a visit skipped, a check-in not delivered yet or
a stay shorter than planned turn the chain into a guess. Measured on the simulated day,
raising on the whole chain was right about six times in ten, on the next visit more than
nine in ten (docs/rules.md). The visits beyond still get their ETA. It is resolved when
the visit is attended (``arrived``), when the prediction comes back at least
:data:`RECOVER_MARGIN_S` inside the deadline or loses its basis
(``prediction_recovered``), and when the deadline passes and ``late`` takes over
(``late_raised``). An escalation id opens once: a visit predicted late again after it
recovered stays resolved, and its ``late`` says the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from stream.contract import Visit
from stream.contract.records import Escalation
from stream.rules.book import EscalationBook
from stream.state.visit import VisitState
from stream.timeutil import format_instant

KIND = "at_risk"
# How far inside its late deadline a prediction must come back to resolve ``at_risk``: a
# prediction that wavers around the deadline does not open and close it in turn.
RECOVER_MARGIN_S = 300.0
# The chains that start where the worker is: the visit they go to next.
NEXT = frozenset({"checked_out", "inside"})


class Predicted(msgspec.Struct, gc=False, frozen=True):
    """A worker's latest prediction for a visit, as its run partition sent it."""

    arrival: float
    cause: str | None
    basis: tuple[str, str | None, float, float, float]  # (from, visit, free at, s, m/s)
    made: float  # when


def expected(vs: VisitState) -> tuple[float, Predicted] | None:
    """When the visit is expected: its last absent worker's predicted arrival, and that
    prediction; None while an absent worker has none (or everyone is in)."""
    held = vs.predictions or {}
    absent = [w for w in vs.visit.worker_ids if w not in vs.checkins]
    if not absent or any(w not in held for w in absent):
        return None
    worker = max(absent, key=lambda w: held[w].arrival)
    return held[worker].arrival, held[worker]


def eta_evidence(vs: VisitState) -> dict[str, Any]:
    """What a ``late`` or ``missed`` says of when the worker will come: the expected
    arrival and its basis; nothing without a basis (its cause: stream/rules/causes.py)."""
    found = expected(vs)
    if found is None:
        return {}
    arrival, p = found
    return {"expected_arrival": format_instant(arrival), "eta_basis": basis_doc(p)}


def basis_doc(p: Predicted) -> dict[str, Any]:
    source, visit_id, free_at, travel_s, speed = p.basis
    doc: dict[str, Any] = {"from": source, "free_at": format_instant(free_at),
                           "travel_s": travel_s, "speed_m_s": speed,
                           "predicted_at": format_instant(p.made)}
    if visit_id is not None:
        doc["previous_visit_id"] = visit_id
    return doc


class AtRisk:
    def __init__(self, book: EscalationBook, late_deadline: Callable[[Visit], float]) -> None:
        self.book = book
        self._late_at = late_deadline  # attendance's

    def predicted(self, vs: VisitState, worker: str, arrival: float | None,
                  cause: str | None, basis: tuple[str, str | None, float, float, float],
                  now: float) -> list[Escalation]:
        """Take a worker's prediction for the visit (``arrival`` None: withdrawn) and raise
        or resolve ``at_risk`` as it now stands."""
        v = vs.visit
        held = dict(vs.predictions or {})
        if arrival is None or worker not in v.worker_ids:
            held.pop(worker, None)
        else:
            held[worker] = Predicted(arrival, cause, basis, now)
        vs.predictions = held or None
        if v.cancelled or vs.checkins:
            return []  # never for a visit already checked into
        late_at = self._late_at(v)
        if now >= late_at:
            return []  # late's own deadline has come: late decides
        found = expected(vs)
        book, vid = self.book, v.visit_id
        if found is not None and found[0] > late_at and found[1].basis[0] in NEXT:
            if book.known(vid, KIND):
                return []
            eta, p = found
            return book.open(vs, KIND, now, now, {
                "expected_arrival": format_instant(eta),
                "predicted_lateness_s": round(eta - v.start, 1),
                "late_deadline": format_instant(late_at),
                "lead_s": round(late_at - now, 1),
                "cause": p.cause or "unknown", "eta_basis": basis_doc(p)})
        if book.is_open(vid, KIND) and (found is None
                                        or found[0] <= late_at - RECOVER_MARGIN_S):
            return book.resolve(vs, KIND, now, "prediction_recovered",
                                {"expected_arrival": format_instant(found[0])}
                                if found is not None else {})
        return []
