"""Priority, service impact score and recommended recovery route of an escalation.

The score (0-100) adds up what the seed policies say raises the stakes of a failure:

* what went wrong (``KIND_BASE``): nobody came is worse than somebody came late, which is
  worse than a question over where a check-in was made;
* the service user's risk level from the care plan (``RISK_POINTS``);
* the flags that the policies single out for the highest back-up priority, for the kinds
  where the person goes without care: a time-critical (medication) visit, a person who lives
  alone, a person with cognitive impairment (``FLAG_POINTS``).

Priority is a band of the score (``P1`` >= 80, ``P2`` >= 60, ``P3`` >= 40, else ``P4``),
except that a missed time-critical visit for a person who lives alone or with cognitive
impairment is always ``P1``. The route follows kind and priority (``route``). ``respond_by``
is detection plus 15 minutes: the seed's deadline for assigning a recovery pathway.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from stream.contract.records import ESCALATION_KINDS

RESPOND_WITHIN_S = 15 * 60.0

KIND_BASE = {
    "missed": 60,
    "late": 35,
    "no_check_out": 30,
    "shortened": 25,
    "location_mismatch": 30,
    "wrong_worker": 30,
    "unscheduled": 20,
    "location_unverified": 15,
    "extended": 10,
    "at_risk": 35,  # scored as the lateness it predicts
    "safeguarding_review": 60,  # P2 or P1 whatever the score: stream/rules/safeguarding.py
}
KINDS = ESCALATION_KINDS
assert set(KIND_BASE) == set(KINDS), "every kind of escalation has a base score"

# Kinds where the person may be going without care right now: the vulnerability flags
# count in full for these.
CARE_GAP_KINDS = frozenset({"missed", "late", "no_check_out", "shortened", "at_risk"})

RISK_POINTS = {"low": 0, "medium": 10, "high": 20, "critical": 30}
FLAG_POINTS = {"time_critical": 15, "lives_alone": 10, "cognitive_impairment": 10}


@dataclass(frozen=True, slots=True)
class Assessment:
    priority: str
    service_impact_score: int
    recommended_route: str


# Few combinations of its arguments exist: a storm of escalations assesses each once.
@functools.lru_cache(maxsize=1024)
def assess(kind: str, risk_level: str, *, time_critical: bool = False,
           lives_alone: bool = False, cognitive_impairment: bool = False) -> Assessment:
    score = KIND_BASE[kind] + RISK_POINTS.get(risk_level, RISK_POINTS["medium"])
    if kind in CARE_GAP_KINDS:
        score += (FLAG_POINTS["time_critical"] * time_critical
                  + FLAG_POINTS["lives_alone"] * lives_alone
                  + FLAG_POINTS["cognitive_impairment"] * cognitive_impairment)
    score = max(0, min(100, score))
    priority = _band(score)
    if kind == "missed" and time_critical and (lives_alone or cognitive_impairment):
        priority = "P1"
    return Assessment(priority, score, route(kind, priority))


def route(kind: str, priority: str) -> str:
    """The recovery route a duty manager should start from.

    missed: P1 emergency escalation, P2-P3 immediate replacement, P4 delayed recovery;
    late: P1-P2 immediate replacement, else delayed recovery; no check-out at P1: emergency
    escalation (a worker who never left may be hurt, or the person left alone mid-care);
    at_risk: tell the person when the carer will come, and reallocate to cut the lateness
    (the late-visits policy, 5.4); everything else is evidence for a person to review.
    """
    if kind == "at_risk":
        return "inform_and_reallocate"
    if kind == "missed":
        return {"P1": "emergency_escalation", "P4": "delayed_recovery"}.get(
            priority, "immediate_replacement")
    if kind == "late":
        return "immediate_replacement" if priority in ("P1", "P2") else "delayed_recovery"
    if kind == "no_check_out" and priority == "P1":
        return "emergency_escalation"
    return "review"


def _band(score: int) -> str:
    if score >= 80:
        return "P1"
    if score >= 60:
        return "P2"
    if score >= 40:
        return "P3"
    return "P4"
