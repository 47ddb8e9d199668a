"""The ground truth of safeguarding on repeated failure: which ``safeguarding_review``
escalations the monitor must raise, and the visits behind each, derived from the late and
missed escalations the ledger expects (simulator/ledger.py) by the rule as docs/rules.md
states it ("Safeguarding"), not from the detector's code.

Per person, in the order their deadlines fall (late before missed at one instant): once
the failures not yet spent on a review, within the window before the latest, hold the
threshold's number of missed visits or of late visits, a review is raised as of that
deadline, naming them, and they are spent.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from simulator.scenario import Scenario

KIND = "safeguarding_review"


@dataclass(frozen=True, slots=True)
class Review:
    escalation_id: str
    client_id: str
    deadline: float
    base: float
    visits: tuple[str, ...]
    trigger: str  # the visit whose failure reached the threshold


def expect_reviews(sc: Scenario, failures: list[tuple[str, str, float, float]],
                   missed_n: int, late_n: int, window_s: float) -> list[Review]:
    """``failures``: the expected late and missed escalations, ``(visit_id, kind, deadline,
    base)``."""
    by_client: dict[str, list[tuple[float, str, str, float]]] = defaultdict(list)
    for vid, kind, deadline, base in failures:
        fact = sc.facts.get(vid)
        if fact is not None:
            by_client[fact.doc["client_id"]].append((deadline, kind, vid, base))
    reviews = []
    for client, items in by_client.items():
        spent: set[tuple[str, str]] = set()
        seen: list[tuple[float, str, str]] = []
        for deadline, kind, vid, base in sorted(items):
            seen.append((deadline, kind, vid))
            live = [(d, k, v) for d, k, v in seen
                    if (k, v) not in spent and deadline - window_s <= d <= deadline]
            missed = {v for _, k, v in live if k == "missed"}
            late = {v for _, k, v in live if k == "late"}
            if len(missed) >= missed_n or len(late) >= late_n:
                spent.update((k, v) for _, k, v in live)
                eid = f"safeguarding:{client}:{vid}:{kind}:{KIND}"
                reviews.append(Review(eid, client, deadline, base,
                                      tuple(sorted({v for _, _, v in live})), vid))
    return reviews
