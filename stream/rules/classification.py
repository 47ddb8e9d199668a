"""The classification of a visit record: what the evidence says about why a visit failed,
suggested, never decided (the record's ``classification``).

From ``shared/seeds/no-show-classification-and-recovery.txt``: a missed visit is classified
before any no-show code, the "known service-side disruption flag is actively answered
rather than assumed negative", and "attendance recording [must] distinguish person refusal
from operational access failure". So:

- ``service_side_disruption`` is ``yes`` with its evidence (a late roster change, a worker
  reassigned, a cancellation less than an hour before the start, the cause a worker's run
  gave: travel, carried from the previous visit, not started); ``no`` only when the visit
  was delivered as rostered (the rostered workers, all of them, on time, at the home, for
  its length, no late change or reassignment);
  otherwise ``unknown``, never assumed ``no``;
- a failed visit (late, missed, or no access) gets a ``suggested_classification``:
  ``service_failure`` when the service side was disrupted; ``person_declined`` only when a
  case on it was closed as ``client_declined``; ``access_barrier_possible`` when a worker
  checked in at the home and left within :data:`NO_ACCESS_S`; else ``needs_review``.

The missed-outcome targets review asks what was within the provider's control: the
evidence list is that answer where the monitor has it.
"""

from __future__ import annotations

from stream.contract.records import Classification, RosterChange

# A worker who checked in at the home and left within this was, as a rule, not let in.
NO_ACCESS_S = 300.0

# Causes a worker's run gives (stream/rules/runs.py) that lie with the service.
RUN_CAUSES = ("travel", "carried_from_previous_visit", "not_started")

NOTE = "suggested by the monitor; people decide"


def classify(*, changes: tuple[RosterChange, ...], cause: str | None, timeliness: str,
             delivered: bool, declined: bool, no_access: bool) -> Classification:
    """A visit's classification. ``delivered``: attended by the rostered workers, all of
    them and nobody else, at the home, for its length (no ``shortened``), as far as the
    record shows; whether on time and unchanged is judged here."""
    evidence: list[str] = []
    for change in changes:
        if change.change == "cancelled":
            if change.late:
                evidence.append("late_cancellation")
        else:
            if change.late:
                evidence.append("late_roster_change")
            if change.change == "reassigned":
                evidence.append("reassigned")
    if cause in RUN_CAUSES:
        evidence.append(cause)  # type: ignore[arg-type]
    failed = timeliness in ("late", "missed") or no_access
    if evidence:
        disruption = "yes"
    elif not failed and delivered:
        disruption = "no"
    else:
        disruption = "unknown"
    suggested = None
    if failed:
        suggested = ("service_failure" if disruption == "yes"
                     else "person_declined" if declined
                     else "access_barrier_possible" if no_access
                     else "needs_review")
    return Classification(service_side_disruption=disruption,
                          disruption_evidence=tuple(evidence),
                          suggested_classification=suggested, decided=None, note=NOTE)
