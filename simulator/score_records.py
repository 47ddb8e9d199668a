"""Grade the visit records on ``ecm.visits`` against the ledger (simulator/records.py), and
the visits each safeguarding review names (simulator/safeguarding.py).

Per visit the last record wins, as it does for the topic's readers. A graded visit must
have one; what its last record says is compared field by field, and its classification
(disruption and suggestion together) per injected cause. Records written again with
nothing changed but ``settled_at`` are counted as repeats (a replay's, harmless to a
reader that keeps the last).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from simulator.ledger import Ledger

FIELDS = ("outcome", "timeliness", "contactability", "service_side_disruption",
          "suggested_classification")


def _said(record: dict[str, Any], name: str) -> Any:
    c = record.get("classification") or {}
    return c.get(name) if name in ("service_side_disruption", "suggested_classification") \
        else record.get(name)


def score_records(ledger: Ledger, records: list[dict[str, Any]]) -> dict[str, Any] | None:
    truth = (ledger.records or {}).get("visits")
    if truth is None:
        return None
    last: dict[str, dict[str, Any]] = {}
    written: Counter[str] = Counter()
    repeats = 0
    for r in records:
        vid = r.get("visit_id")
        if not isinstance(vid, str):
            continue
        held = last.get(vid)
        if held is not None and {k: v for k, v in held.items() if k != "settled_at"} == {
                k: v for k, v in r.items() if k != "settled_at"}:
            repeats += 1
        last[vid] = r
        written[vid] += 1
    unjudged = set((ledger.unjudged or {}).get("visits", ()))
    graded = {vid: t for vid, t in truth.items()
              if t["changed"] <= ledger.score_until and vid not in unjudged}
    missing = sorted(set(graded) - set(last))
    spurious = sorted(set(last) - set(truth))
    fields: dict[str, dict[str, Any]] = {}
    for name in FIELDS:
        right, wrong = 0, Counter()
        for vid, t in graded.items():
            r = last.get(vid)
            if r is None:
                continue
            said = _said(r, name)
            if said == t[name]:
                right += 1
            else:
                wrong[f"{t[name]} as {said}"] += 1
        n = len(graded) - len(missing)
        fields[name] = {"graded": n, "right": right, "accuracy": right / n if n else None,
                        "wrong": dict(wrong.most_common(6))}
    by_cause: dict[str, dict[str, Any]] = {}
    silent_no = silent_unknown = silent = 0
    for vid, t in graded.items():
        cause, r = t["injected"], last.get(vid)
        if cause is None or r is None:
            continue
        pair = (_said(r, "service_side_disruption"), _said(r, "suggested_classification"))
        if cause == "silent":
            silent += 1
            silent_no += pair[0] == "no"
            silent_unknown += pair[0] == "unknown"
        g = by_cause.setdefault(cause, {"graded": 0, "right": 0, "said": Counter()})
        g["graded"] += 1
        if pair == (t["service_side_disruption"], t["suggested_classification"]):
            g["right"] += 1
        else:
            g["said"]["/".join(map(str, pair))] += 1
    injected = [g for c, g in by_cause.items() if c != "silent"]
    n_inj = sum(g["graded"] for g in injected)
    return {
        "graded": len(graded), "records": sum(written.values()), "visits": len(last),
        "missing": len(missing), "spurious": len(spurious), "repeats": repeats,
        "missing_ids": missing[:5], "spurious_ids": spurious[:5],
        "complete": (len(graded) - len(missing)) / len(graded) if graded else 1.0,
        "fields": fields,
        "classification": {
            "injected": n_inj, "right": sum(g["right"] for g in injected),
            "accuracy": sum(g["right"] for g in injected) / n_inj if n_inj else None,
            "silent": silent, "silent_unknown": silent_unknown, "silent_said_no": silent_no,
            "by_cause": {c: {**g, "said": dict(g["said"])} for c, g in sorted(by_cause.items())}},
    }


def score_review_visits(ledger: Ledger, escalations: list[dict[str, Any]]
                        ) -> dict[str, Any] | None:
    """For each expected safeguarding review raised, whether it names the visits the
    ledger does."""
    truth = ledger.safeguarding
    if truth is None:
        return None
    scored = {e.escalation_id for e in ledger.expected if e.scored}
    right = graded = 0
    wrong = []
    for r in escalations:
        eid = r.get("escalation_id")
        if r.get("revision") != 1 or eid not in truth or eid not in scored:
            continue
        graded += 1
        if sorted((r.get("evidence") or {}).get("visits", ())) == sorted(truth[eid]):
            right += 1
        else:
            wrong.append(eid)
    return {"graded": graded, "right": right, "wrong_ids": wrong[:5]}


def format_records(report: dict[str, Any]) -> list[str]:
    lines = []
    rec = report.get("records")
    if rec:
        lines += ["", f"visit records ({rec['graded']} visits graded; {rec['records']} records "
                  f"for {rec['visits']} visits, {rec['repeats']} repeats)",
                  f"complete: {rec['complete']:.4f}, missing {rec['missing']}, "
                  f"spurious {rec['spurious']}"]
        for name, g in rec["fields"].items():
            wrong = ", ".join(f"{k} {n}" for k, n in g["wrong"].items())
            acc = "-" if g["accuracy"] is None else f"{g['accuracy']:.4f}"
            lines.append(f"  {name:<26} {acc:>7}" + (f"  (wrong: {wrong})" if wrong else ""))
        c = rec["classification"]
        acc = "-" if c["accuracy"] is None else f"{c['accuracy']:.3f}"
        lines.append(f"classification where a cause was injected: {c['right']} of "
                     f"{c['injected']} right, accuracy {acc}; silent failures {c['silent']}: "
                     f"unknown {c['silent_unknown']}, said no {c['silent_said_no']}")
        for cause, g in c["by_cause"].items():
            wrong = ", ".join(f"{k} {n}" for k, n in sorted(g["said"].items()))
            lines.append(f"  {cause:<28} {g['right']:>6} of {g['graded']:<6}"
                         + (f" (said: {wrong})" if wrong else ""))
    sg = report.get("safeguarding_visits")
    if sg:
        lines.append(f"safeguarding reviews naming the ledger's visits: {sg['right']} of "
                     f"{sg['graded']}")
    return lines
