"""Grade the monitor against the ledger: ``ecm score``.

Reads every escalation and dead letter published so far and compares them, per kind, with
the escalations the ledger says were due inside the scoring window: expected, raised,
missing, spurious, duplicate ``open`` records, precision, recall, and detection latency
(``detected_at - deadline``) in simulated and in wall seconds.
"""

from __future__ import annotations

import base64
import json
import logging
from collections import Counter, defaultdict
from typing import Any

import orjson

from simulator.ledger import Ledger
from stream.contract.records import lifecycle
from stream.security import connection
from stream.settings import Settings
from stream.timeutil import parse_instant

log = logging.getLogger(__name__)


def read_topic(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """Every record of a topic, from the beginning to its end offsets now."""
    return [doc for doc, _ in read_stamped(settings, topic)]


def read_stamped(settings: Settings, topic: str) -> list[tuple[dict[str, Any], float | None]]:
    """Every record of a topic with its Kafka timestamp (wall seconds; None when the broker
    gives none), from the beginning to its end offsets now."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**connection(settings), group_id=None,
                             enable_auto_commit=False, consumer_timeout_ms=2000)
    out: list[tuple[dict[str, Any], float | None]] = []
    unreadable = 0

    def take(batch: dict[Any, list[Any]]) -> None:
        nonlocal unreadable
        for records in batch.values():
            for r in records:
                doc = _object(r.value)
                if doc is None:  # a poisoned record (tests/chaos): no monitor's output
                    unreadable += r.value is not None
                    continue
                out.append((doc, r.timestamp / 1e3 if r.timestamp and r.timestamp > 0
                            else None))

    try:
        parts = [TopicPartition(topic, p)
                 for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            take(consumer.poll(timeout_ms=1000, max_records=50_000))
        # The embedded broker reports the base offset of a partition's last batch as its
        # end: the rest of that batch lies beyond it. Read on until the topic is quiet.
        while batch := consumer.poll(timeout_ms=500, max_records=50_000):
            take(batch)
        if unreadable:
            log.warning("%s: skipped %d records that are not JSON objects", topic, unreadable)
        return out
    finally:
        consumer.close()


def _object(value: bytes | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return doc if type(doc) is dict else None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[k]


def score(ledger: Ledger, escalations: list[dict[str, Any]],
          deadletters: list[dict[str, Any]]) -> dict[str, Any]:
    lo, hi = ledger.window_start, ledger.score_until
    expected = {e.escalation_id: e for e in ledger.expected if e.scored}
    opens: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in escalations:
        # at_risk is a prediction, graded on its own (score_runs).
        if lifecycle(r) == "open" and r.get("kind") != "at_risk":
            opens[r["escalation_id"]].append(r)
    raised = {}
    for eid, records in opens.items():
        deadline = parse_instant(records[0]["deadline"])
        if deadline is not None and lo <= deadline <= hi and ledger.judged(records[0]):
            raised[eid] = records[0]
    kinds = sorted({e.kind for e in expected.values()} | {r["kind"] for r in raised.values()})
    per_kind: dict[str, dict[str, Any]] = {}
    all_lat: list[float] = []
    for kind in kinds:
        exp = {k for k, e in expected.items() if e.kind == kind}
        got = {k for k, r in raised.items() if r["kind"] == kind}
        hit = exp & got
        lat = []
        for k in hit:
            detected = parse_instant(raised[k]["detected_at"])
            if detected is not None:
                lat.append(detected - expected[k].deadline)
        all_lat += lat
        per_kind[kind] = {
            "expected": len(exp), "raised": len(got), "missing": len(exp - got),
            "spurious": len(got - exp),
            "duplicates": sum(len(opens[k]) - 1 for k in got if len(opens[k]) > 1),
            "precision": len(hit) / len(got) if got else 1.0,
            "recall": len(hit) / len(exp) if exp else 1.0,
            **_latency(lat, ledger.speed),
            "missing_ids": sorted(exp - got)[:5], "spurious_ids": sorted(got - exp)[:5],
        }
    unjudged = set((ledger.cases or {}).get("unjudged_actions", ()))
    dead = Counter(d.get("reason", "?") for d in deadletters
                   if not unjudged or _action_id(d) not in unjudged)
    exp_all = len(expected)
    hit_all = len(set(expected) & set(raised))
    return {
        "kinds": per_kind,
        "expected": exp_all, "raised": len(raised),
        "missing": exp_all - hit_all, "spurious": len(raised) - hit_all,
        "unjudged_visits": len((ledger.unjudged or {}).get("visits", ())),
        "duplicates": sum(len(v) - 1 for v in opens.values() if len(v) > 1),
        "precision": hit_all / len(raised) if raised else 1.0,
        "recall": hit_all / exp_all if exp_all else 1.0,
        **_latency(all_lat, ledger.speed),
        "deadletters": {r: {"expected": ledger.deadletters.get(r, 0), "got": dead.get(r, 0)}
                        for r in sorted(set(dead) | set(ledger.deadletters))},
    }


def score_cases(ledger: Ledger, escalations: list[dict[str, Any]],
                deadletters: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Grade the cases (simulator/cases.py) as escalations are graded: breaches by
    (escalation, stage), verifications, and refusals of the desk's actions, each with
    precision and recall; breaches also with duplicates (a stage published as newly
    breached more than once) and latency (detected_at - due)."""
    truth = ledger.cases
    if truth is None:
        return None
    graded = set(truth["graded"])
    ambiguous = {(eid, st) for eid, stages in truth["ambiguous"].items() for st in stages}
    by_eid: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in escalations:
        if r.get("escalation_id") in graded and "revision" in r:
            by_eid[r["escalation_id"]].append(r)
    got: dict[tuple[str, str], dict[str, Any]] = {}
    introduced: Counter[tuple[str, str]] = Counter()
    verified: dict[str, bool] = {}
    for eid, records in by_eid.items():
        before: set[str] = set()
        for r in sorted(records, key=lambda r: r["revision"]):
            stages = {b["stage"] for b in r.get("breaches") or ()}
            for b in r.get("breaches") or ():
                if b["stage"] not in before:
                    introduced[(eid, b["stage"])] += 1
                    got.setdefault((eid, b["stage"]), b)
            before = stages
            v = (r.get("case") or {}).get("verification")
            if v is not None:
                verified[eid] = bool(v.get("in_time"))
    expected = {(eid, st) for eid, stages in truth["breaches"].items() for st in stages}
    found = set(got) - ambiguous
    latencies = [d - due for k in expected & found
                 if (d := parse_instant(got[k]["detected_at"])) is not None
                 and (due := parse_instant(got[k]["due"])) is not None]
    unjudged = set(truth.get("unjudged_actions", ()))
    for eid in truth.get("unjudged_cases", ()):
        verified.pop(eid, None)
    refused: dict[str, str] = {}
    for d in deadletters:
        action_id = _action_id(d)
        if action_id is not None and action_id.startswith("desk-") and (
                action_id not in unjudged):
            refused[action_id] = d.get("reason", "?")
    exp_ref = truth["refusals"]
    exp_ver = truth["verifications"]

    def graded_set(exp: set[Any], got_: set[Any]) -> dict[str, Any]:
        hit = exp & got_
        return {"expected": len(exp), "found": len(got_), "missing": len(exp - got_),
                "spurious": len(got_ - exp),
                "precision": len(hit) / len(got_) if got_ else 1.0,
                "recall": len(hit) / len(exp) if exp else 1.0,
                "missing_ids": sorted(map(str, exp - got_))[:5],
                "spurious_ids": sorted(map(str, got_ - exp))[:5]}

    return {
        "graded_escalations": len(graded), "ambiguous": len(ambiguous),
        "breaches": {**graded_set(expected, found),
                     "by_stage": dict(Counter(st for _, st in expected)),
                     "duplicates": sum(n - 1 for n in introduced.values() if n > 1),
                     **_latency(latencies, ledger.speed)},
        "verifications": graded_set({(k, v) for k, v in exp_ver.items()},
                                    {(k, v) for k, v in verified.items()}),
        "refusals": graded_set(set(exp_ref.items()), set(refused.items())),
    }


def score_runs(ledger: Ledger, escalations: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Grade the worker runs (simulator/runs.py): ``at_risk`` against the visits really
    late (precision) and those a perfect predictor could call with the ledger's lead
    (recall), its lead time before the late deadline, and the expected arrivals that
    at_risk, late and missed carry against when the worker truly came."""
    truth = ledger.runs
    if truth is None:
        return None
    late_at: dict[str, float] = truth["late_at"]
    arrived: dict[str, float | None] = truth["arrived"]
    late = {v for v, t in late_at.items() if arrived[v] is None or arrived[v] > t}
    first: dict[str, dict[str, Any]] = {}
    for r in escalations:
        if lifecycle(r) == "open":
            first.setdefault(r["escalation_id"], r)
    raised = {}
    errors: dict[str, list[float]] = {"at_risk": [], "late": [], "missed": []}
    with_eta: Counter[str] = Counter()
    for eid, r in first.items():
        vid, kind = eid.rsplit(":", 1)
        if vid not in late_at or kind not in errors:
            continue
        if kind == "at_risk":
            raised[vid] = r
        eta = parse_instant((r.get("evidence") or {}).get("expected_arrival"))
        came = arrived[vid]
        if eta is not None:
            with_eta[kind] += 1
            if came is not None:
                errors[kind].append(abs(eta - came))
    hit = set(raised) & late
    callable_ = set(truth["callable"])
    causes = _cause_grades(truth.get("causes", {}), escalations)
    leads = sorted(late_at[v] - d for v in hit
                   if (d := parse_instant(raised[v]["detected_at"])) is not None)
    return {
        "lead_s": truth["lead_s"], "graded_visits": len(late_at), "really_late": len(late),
        "at_risk": {"raised": len(raised), "true": len(hit),
                    "precision": len(hit) / len(raised) if raised else 1.0,
                    "callable": len(callable_), "caught": len(callable_ & set(raised)),
                    "recall": len(callable_ & set(raised)) / len(callable_) if callable_
                    else 1.0,
                    "lead_p50_s": _percentile(leads, 0.5), "lead_p10_s": _percentile(leads, 0.1),
                    "missing_ids": sorted(callable_ - set(raised))[:5],
                    "spurious_ids": sorted(set(raised) - late)[:5]},
        "eta": {kind: {"with_eta": with_eta[kind], "error_p50_s": _percentile(sorted(e), 0.5),
                       "error_p90_s": _percentile(sorted(e), 0.9)}
                for kind, e in errors.items()},
        "causes": causes,
    }


def _cause_grades(expected: dict[str, str], escalations: list[dict[str, Any]]
                  ) -> dict[str, Any]:
    """The cause each graded ``late`` states in its last revision, against the injected
    one: per true cause, how many were graded and right, and what the wrong ones said."""
    last: dict[str, dict[str, Any]] = {}
    for r in escalations:
        eid = r["escalation_id"]
        if eid.endswith(":late") and r.get("revision", 1) >= last.get(eid, {}).get(
                "revision", 0):
            last[eid] = r
    by: dict[str, dict[str, Any]] = {}
    for vid, cause in expected.items():
        r = last.get(f"{vid}:late")
        if r is None:
            continue  # graded with the late escalations themselves
        said = (r.get("evidence") or {}).get("cause")
        g = by.setdefault(cause, {"graded": 0, "right": 0, "said": Counter()})
        g["graded"] += 1
        g["right"] += said == cause
        if said != cause:
            g["said"][str(said)] += 1
    graded = sum(g["graded"] for g in by.values())
    right = sum(g["right"] for g in by.values())
    return {"graded": graded, "right": right,
            "accuracy": right / graded if graded else None,
            "by_cause": {c: {**g, "said": dict(g["said"])} for c, g in sorted(by.items())}}


def _action_id(deadletter: dict[str, Any]) -> str | None:
    """The action id of a dead-lettered action, from its raw bytes; None for anything
    else."""
    raw = deadletter.get("raw")
    try:
        doc = orjson.loads(base64.b64decode(raw)) if raw else None
    except (ValueError, orjson.JSONDecodeError):
        return None
    action_id = doc.get("action_id") if isinstance(doc, dict) else None
    return action_id if isinstance(action_id, str) else None


def _latency(values: list[float], speed: float) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)):
        v = _percentile(values, q)
        out[f"latency_{name}_s"] = v
        out[f"latency_{name}_wall_s"] = None if v is None else v / (speed or 1.0)
    return out


def format_report(report: dict[str, Any]) -> str:
    def f(v: float | None, digits: int = 1) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    lines = [f"{'kind':<20}{'expected':>9}{'raised':>8}{'missing':>8}{'spurious':>9}{'dup':>5}"
             f"{'precision':>10}{'recall':>8}{'p50 s':>8}{'p99 s':>8}{'max s':>8}{'p99 wall':>9}"]
    rows = [*report["kinds"].items(), ("all", report)]
    for kind, k in rows:
        lines.append(f"{kind:<20}{k['expected']:>9}{k['raised']:>8}{k['missing']:>8}"
                     f"{k['spurious']:>9}{k['duplicates']:>5}{k['precision']:>10.3f}"
                     f"{k['recall']:>8.3f}{f(k['latency_p50_s']):>8}{f(k['latency_p99_s']):>8}"
                     f"{f(k['latency_max_s']):>8}{f(k['latency_p99_wall_s'], 2):>9}")
    lines.append("")
    lines.append(f"{'dead letters':<24}{'expected':>9}{'got':>6}")
    for reason, d in report["deadletters"].items():
        lines.append(f"{reason:<24}{d['expected']:>9}{d['got']:>6}")
    lines.append("latency: detected_at - deadline, in simulated seconds (wall = simulated / speed)")
    if report.get("unjudged_visits"):
        lines.append(f"unjudged: {report['unjudged_visits']} visits whose check-in no input "
                     "attributes (docs/rules.md), with their clients' safeguarding reviews")
    cases = report.get("cases")
    if cases:
        lines.append("")
        lines.append(f"cases (the duty desk's; {cases['graded_escalations']} escalations graded, "
                     f"{cases['ambiguous']} outcomes too close to call left out)")
        lines.append(f"{'':<20}{'expected':>9}{'found':>8}{'missing':>8}{'spurious':>9}"
                     f"{'dup':>5}{'precision':>10}{'recall':>8}{'p99 s':>8}{'p99 wall':>9}")
        for name in ("breaches", "verifications", "refusals"):
            k = cases[name]
            lines.append(f"{name:<20}{k['expected']:>9}{k['found']:>8}{k['missing']:>8}"
                         f"{k['spurious']:>9}{k.get('duplicates', 0):>5}{k['precision']:>10.3f}"
                         f"{k['recall']:>8.3f}{f(k.get('latency_p99_s')):>8}"
                         f"{f(k.get('latency_p99_wall_s'), 2):>9}")
        lines.append("breach latency: detected_at - due, in simulated seconds")
    runs = report.get("runs")
    if runs:
        a = runs["at_risk"]
        lines.append("")
        lines.append(f"worker runs ({runs['graded_visits']} visits graded, "
                     f"{runs['really_late']} really late)")
        lines.append(f"at_risk: raised {a['raised']}, true {a['true']}, precision "
                     f"{a['precision']:.3f}; callable with {runs['lead_s'] / 60:.0f} min lead "
                     f"{a['callable']}, caught {a['caught']}, recall {a['recall']:.3f}; "
                     f"lead before the late deadline p50 {f(a['lead_p50_s'])} s, "
                     f"p10 {f(a['lead_p10_s'])} s")
        for kind, e in runs["eta"].items():
            lines.append(f"ETA on {kind:<8} {e['with_eta']:>6} carry one; |error| p50 "
                         f"{f(e['error_p50_s'])} s, p90 {f(e['error_p90_s'])} s")
        c = runs.get("causes") or {}
        if c.get("graded"):
            lines.append(f"causes on late: {c['right']} of {c['graded']} right, accuracy "
                         f"{c['accuracy']:.3f}")
            for cause, g in c["by_cause"].items():
                wrong = ", ".join(f"{k} {n}" for k, n in sorted(g["said"].items()))
                lines.append(f"  {cause:<28} {g['right']:>6} of {g['graded']:<6}"
                             + (f" (said: {wrong})" if wrong else ""))
    from simulator.score_records import format_records

    lines += format_records(report)
    return "\n".join(lines)


def summary_json(report: dict[str, Any]) -> str:
    keep = {k: v for k, v in report.items() if k != "kinds"}
    keep["kinds"] = {k: {n: v for n, v in d.items() if not n.endswith("_ids")}
                     for k, d in report["kinds"].items()}
    return json.dumps(keep, default=lambda o: o)
