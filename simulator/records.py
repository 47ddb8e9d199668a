"""The ground truth of visit records: what the last record of each visit on ``ecm.visits``
must say, derived from the simulated facts by the rules as docs/rules.md states them
("Visit records", "Classification"), not from the detector's code.

A visit is graded when its record's last change (its settling, or a later event, or the
case's close that makes it ``person_declined``) falls inside the scoring window. The
fields graded: ``outcome``, ``timeliness``, ``contactability``, and the classification's
``service_side_disruption`` and ``suggested_classification``.

The *injected cause* of a visit, what the classification is judged on: a reassignment, a
roster change or a cancellation less than an hour before the start, the run's cause
(travel, or carried from the previous visit, when the workers predict their runs), a worker
not let in (``no_access``), a person who declined the recovery (the desk's ``declined``);
``silent`` for a late or missed visit with none of these, whose disruption must be
``unknown``, never ``no``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from simulator.ledger import Ledger, _location, _stamp
from simulator.scenario import Scenario, VisitFact
from stream.timeutil import parse_instant

LATE_CHANGE_S = 3600.0  # docs/rules.md, "Causes": a change less than an hour ahead is late
NO_ACCESS_S = 300.0  # docs/rules.md, "Classification"
RUN_CAUSES = ("travel", "carried_from_previous_visit")


def expect_records(sc: Scenario, ledger: Ledger, declined: Mapping[str, float] | None = None,
                   run_causes: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``declined``: visit id -> when the case's close as ``client_declined`` reached Kafka
    (and was applied); ``run_causes``: the runs' truth, when the workers predict."""
    expected = {e.escalation_id for e in ledger.expected}
    visits = {}
    for vid, fact in sc.facts.items():
        truth = _visit(sc, fact, expected, (declined or {}).get(vid),
                       (run_causes or {}).get(vid))
        if truth is not None:
            visits[vid] = truth
    return {"visits": visits}


def report_totals(ledger: Ledger, first: str, last: str) -> dict[str, int]:
    """The totals ``ecm report --from first --to last`` must give (docs/operating.md, "The
    management report"), from the ledger: the visits scheduled on those days (UTC), and the
    safeguarding reviews raised on them."""
    n: Counter[str] = Counter()
    for t in (ledger.records or {}).get("visits", {}).values():
        if not first <= t["day"] <= last:
            continue
        n["visits"] += 1
        n["planned"] += t["timeliness"] != "cancelled"
        n[t["timeliness"]] += 1
        n["attended"] += t["outcome"] in ("attended", "attended_no_check_out")
        n[f"disruption_{t['service_side_disruption']}"] += 1
        if t["suggested_classification"] is not None:
            n[f"suggested_{t['suggested_classification']}"] += 1
    reviews = {e.escalation_id: e.deadline for e in ledger.expected
               if e.kind == "safeguarding_review"}
    n["safeguarding_reviews"] = sum(
        1 for at in reviews.values()
        if first <= datetime.fromtimestamp(at, UTC).date().isoformat() <= last)
    return dict(n)


def _visit(sc: Scenario, fact: VisitFact, expected: Collection[str],
           declined_at: float | None, run_cause: str | None) -> dict[str, Any] | None:
    end = sc.config.window[1]
    doc = fact.doc
    vid = doc["visit_id"]
    start, vend = parse_instant(doc["scheduled_start"]), parse_instant(doc["scheduled_end"])
    assert start is not None and vend is not None
    late_at = start + fact.threshold("late_after_s")
    missed_at = start + fact.threshold("missed_after_s")
    noc = vend + fact.threshold("no_checkout_after_s")
    cancelled = (fact.cancelled_at if fact.cancelled_at is not None
                 and fact.cancelled_at <= end else None)
    events = sorted((e for e in fact.events if e.accepted and e.received <= end
                     and (cancelled is None or e.received < cancelled)),
                    key=lambda e: e.received)
    ins: dict[str, float] = {}
    outs: dict[str, float] = {}
    marks = []  # the events the monitor keeps: each worker's first check-in and check-out
    for e in events:
        held = ins if e.type == "check_in" else outs
        if e.worker not in held:
            marks.append(e)
        held[e.worker] = min(held.get(e.worker, math.inf), _stamp(e))
    came = bool(ins or outs)
    complete = came and ins.keys() == outs.keys()
    last_event = max((e.received for e in marks), default=-math.inf)
    if cancelled is not None:
        outcome, changed = "cancelled", cancelled
        timeliness = ("missed" if f"{vid}:missed" in expected
                      else "late" if f"{vid}:late" in expected else "cancelled")
    else:
        if complete:
            outcome, changed = "attended", last_event
        else:
            outcome = "attended_no_check_out" if came else "missed"
            changed = max(noc, last_event)
        need = len(doc["worker_ids"])
        times = sorted(ins.values())
        arrived = (None if not times else times[need - 1] if len(times) >= need
                   else times[-1])
        timeliness = ("missed" if arrived is None or arrived > missed_at
                      else "late" if arrived > late_at else "on_time")
    if declined_at is not None:
        changed = max(changed, declined_at)
    if changed == math.inf:
        return None
    verified = came and all(_location(fact, e) is None for e in marks)
    rostered = set(doc["worker_ids"])
    no_access = verified and any(w in outs and 0.0 <= outs[w] - t < NO_ACCESS_S
                                 for w, t in ins.items())
    evidence = []
    if fact.changed is not None:
        kind, at = fact.changed
        if start - at < LATE_CHANGE_S:
            evidence.append("late_roster_change")
        if kind == "reassigned":
            evidence.append("reassigned")
    if cancelled is not None and start - cancelled < LATE_CHANGE_S:
        evidence.append("late_cancellation")
    if run_cause in RUN_CAUSES:
        evidence.append(run_cause)
    failed = timeliness in ("late", "missed") or no_access
    if evidence:
        disruption = "yes"
    elif (not failed and outcome == "attended" and verified and len(ins) >= len(rostered)
          and (ins.keys() | outs.keys()) <= rostered and f"{vid}:shortened" not in expected):
        disruption = "no"
    else:
        disruption = "unknown"
    suggested = None
    if failed:
        suggested = ("service_failure" if disruption == "yes"
                     else "person_declined" if declined_at is not None
                     else "access_barrier_possible" if no_access else "needs_review")
    injected = (evidence[0] if evidence else "declined" if declined_at is not None and failed
                else "no_access" if fact.no_access and no_access
                else "silent" if failed else None)
    phones = {"".join(ch for ch in p if ch.isdigit()) for p in doc["client_phones"]}
    calls = [e.doc["caller_number"] for e in marks if e.doc["method"] == "telephony"]
    contact = bool(calls) and all("".join(ch for ch in c if ch.isdigit()) in phones
                                  for c in calls)
    return {"outcome": outcome, "timeliness": timeliness, "changed": changed,
            "day": datetime.fromtimestamp(start, UTC).date().isoformat(),
            "service_side_disruption": disruption, "suggested_classification": suggested,
            "contactability": "someone_home" if contact else "unknown",
            "injected": injected}
