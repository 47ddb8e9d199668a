"""Visit records (ecm.visits) and safeguarding reviews (ecm.escalations) for the report's
tests, valid against the contract's schemas, with sensible defaults."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parents[1] / "stream" / "contract" / "schemas"
MONDAY = datetime(2026, 11, 23, tzinfo=UTC)  # the first day of the tests' reports


def at(day: int, hour: float = 9.0) -> datetime:
    return MONDAY + timedelta(days=day, hours=hour)


def rfc(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_OUTCOME = {"on_time": "attended", "late": "attended", "missed": "missed",
            "cancelled": "cancelled"}
_DELAY_S = {"on_time": 120.0, "late": 1200.0, "missed": 2400.0}


def visit_record(visit_id: str, *, client_id: str, start: datetime | str,
                 timeliness: str = "on_time", outcome: str | None = None,
                 rostered: tuple[str, ...] = ("worker-dave-x",),
                 came: tuple[str, ...] | None = None,
                 cause: str | None = None, disruption: str | None = None,
                 evidence: tuple[str, ...] = (), suggested: str | None = None,
                 case_closed_after_s: float | None = None, case_status: str = "open",
                 case_outcome: str | None = None, with_case: bool = True,
                 contract_id: str | None = "contract-essex", minutes: float = 30.0,
                 extended: bool = False) -> dict[str, Any]:
    """A settled visit. ``came`` defaults to the rostered workers when anybody came; a
    late or missed visit has its case (the escalation its timeliness names) unless
    ``with_case`` is false, closed ``case_closed_after_s`` after it was raised."""
    begin = start if isinstance(start, datetime) else datetime.fromisoformat(start)
    text_start = start if isinstance(start, str) else rfc(begin)
    outcome = outcome or _OUTCOME[timeliness]
    attended = outcome in ("attended", "attended_no_check_out")
    came = (rostered if came is None else came) if attended else ()
    delay = _DELAY_S[timeliness] if attended else None
    arrived = begin + timedelta(seconds=delay) if delay is not None else None
    workers = [{
        "worker_id": w, "role": "rostered" if w in rostered else "substitute",
        "checked_in_at": rfc(arrived), "check_in_method": "gps",
        "checked_out_at": None if outcome == "attended_no_check_out"
        else rfc(arrived + timedelta(minutes=minutes)),
        "check_out_method": None if outcome == "attended_no_check_out" else "gps",
        "duration_s": None if outcome == "attended_no_check_out" else minutes * 60}
        for w in came if arrived is not None]
    failed = timeliness in ("late", "missed")
    escalations = []
    if failed and with_case:
        detected = begin + timedelta(minutes=15 if timeliness == "late" else 30)
        e = {"escalation_id": f"{visit_id}:{timeliness}", "kind": timeliness, "priority": "P2",
             "status": case_status, "level": 1, "detected_at": rfc(detected), "breaches": 0}
        if cause:
            e["cause"] = cause
        if case_closed_after_s is not None:
            e.update(status="closed", closed_at=rfc(detected + timedelta(
                seconds=case_closed_after_s)), final_outcome_code=case_outcome or "recovered")
        escalations.append(e)
    if disruption is None:
        disruption = "no" if timeliness == "on_time" and not evidence else "unknown"
    if suggested is None and failed:
        suggested = "needs_review"
    return {
        "schema_version": 1, "visit_id": visit_id, "client_id": client_id,
        "contract_id": contract_id, "settled_at": rfc(begin + timedelta(hours=2)),
        "outcome": outcome, "timeliness": timeliness, "scheduled_start": text_start,
        "scheduled_end": rfc(begin + timedelta(minutes=minutes)),
        "scheduled_duration_s": minutes * 60, "rostered_worker_ids": list(rostered),
        "roster_changes": [], "workers": workers,
        "short_staffed": attended and len(set(came)) < len(rostered),
        "arrived_at": rfc(arrived) if arrived else None, "delayed_s": delay,
        "actual_duration_s": minutes * 60 if attended and outcome == "attended" else None,
        "extended": extended, "location": "verified" if attended else None,
        "escalations": escalations, "cause": cause if failed else None,
        "contactability": "unknown",
        "classification": {"service_side_disruption": disruption,
                           "disruption_evidence": list(evidence),
                           "suggested_classification": suggested if failed else None,
                           "decided": None, "note": "suggested by the monitor"}}


def review(client_id: str, visits: list[str], *, detected: datetime, revision: int = 1,
           missed: int = 0, late: int = 0, priority: str = "P2",
           review_id: str | None = None) -> dict[str, Any]:
    """A ``safeguarding_review`` escalation as the worker writes it."""
    at_ = rfc(detected)
    return {
        "schema_version": 1,
        "escalation_id": review_id or f"safeguarding:{client_id}:{detected:%Y%m%d}",
        "kind": "safeguarding_review", "status": "open", "visit_id": visits[-1],
        "client_id": client_id, "worker_ids": [], "contract_id": "contract-essex",
        "scheduled_start": None, "scheduled_end": None, "deadline": at_, "detected_at": at_,
        "priority": priority, "risk_level": "high", "service_impact_score": 60,
        "recommended_route": "review", "respond_by": rfc(detected + timedelta(minutes=15)),
        "evidence": {"visits": visits, "missed": missed, "late": late},
        "revision": revision, "level": 1, "breaches": [],
        "case": {"owner_due": None, "pathway_due": None, "recovery_due": None, "owner": None,
                 "pathway": None, "decisions": [], "completion": None, "verification": None,
                 "arrivals": [], "closure": None, "history": []}}


_CAUSES = ("travel", "carried_from_previous_visit", "late_roster_change", "not_started",
           "unknown", "unknown")


def month(days: int = 28, visits_a_day: int = 40, seed: int = 7
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A region's weeks from MONDAY: about 8% of visits late, 2% missed, 2% cancelled, a
    safeguarding review for each person with two missed visits; seeded, so the same each run."""
    rnd = random.Random(seed)
    clients = [f"client-{i:03d}-person" for i in range(30)]
    workers = [f"worker-{i:02d}-carer" for i in range(12)]
    visits, reviews, missed_by = [], [], {}
    for day in range(days):
        for n in range(visits_a_day):
            client = rnd.choice(clients)
            draw = rnd.random()
            timeliness = ("missed" if draw < 0.02 + 0.01 * (day % 7 == 5) else
                          "late" if draw < 0.1 else "cancelled" if draw < 0.12 else "on_time")
            closed = rnd.lognormvariate(7.5, 0.8) if rnd.random() < 0.85 else None
            cause = rnd.choice(_CAUSES)
            disrupted = timeliness in ("late", "missed") and cause in (
                "travel", "late_roster_change")
            visit_id = f"visit-{day:02d}-{n:03d}"
            visits.append(visit_record(
                visit_id, client_id=client, start=at(day, 7 + 14 * rnd.random()),
                timeliness=timeliness, rostered=(rnd.choice(workers),), cause=cause,
                disruption="yes" if disrupted else None,
                evidence=(cause,) if disrupted else (),
                suggested="service_failure" if disrupted else None, case_closed_after_s=closed))
            if timeliness == "missed":
                missed_by.setdefault(client, []).append((day, visit_id))
                if len(missed_by[client]) == 2:
                    reviews.append(review(client, [v for _, v in missed_by[client]],
                                          detected=at(day, 22), missed=2))
    return visits, reviews


def validators() -> tuple[Any, Any]:
    """The visit and escalation schemas' validators; the escalation kinds with
    ``safeguarding_review`` (being added to the schema)."""
    from jsonschema import Draft202012Validator, FormatChecker

    visit = json.loads((SCHEMAS / "visit.schema.json").read_text())
    escalation = json.loads((SCHEMAS / "escalation.schema.json").read_text())
    kinds = escalation["properties"]["kind"]["enum"]
    if "safeguarding_review" not in kinds:
        kinds.append("safeguarding_review")
    checker = FormatChecker()
    return (Draft202012Validator(visit, format_checker=checker),
            Draft202012Validator(escalation, format_checker=checker))


def write_lines(path: Path, docs: list[dict[str, Any] | bytes]) -> Path:
    with path.open("wb") as f:
        for d in docs:
            f.write(d if isinstance(d, bytes) else json.dumps(d).encode())
            f.write(b"\n")
    return path
