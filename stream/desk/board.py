"""What the duty desk's board holds: the latest snapshot of every case read from
``ecm.escalations`` (the highest revision wins), the refusals of the desk's own actions read
from ``ecm.deadletter``, and the views the page shows. Pure: no I/O, an injected "now".

A row's order is the desk's: P1 first, then the least time left to the case's next
deadline (owner, pathway or recovery), then the oldest.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any

from stream.contract.records import FINAL_STATUSES
from stream.timeutil import parse_instant, to_datetime

_PRIORITY = {"P1": 0, "P2": 1, "P3": 2, "P4": 3}
PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class Filters:
    priority: str = ""
    kind: str = ""
    level: str = ""
    stage: str = ""
    page: int = 0

    @classmethod
    def from_query(cls, q: Any) -> Filters:
        page = q.get("page", "0")
        return cls(q.get("priority", ""), q.get("kind", ""), q.get("level", ""),
                   q.get("stage", ""), int(page) if str(page).isdigit() else 0)

    def admits(self, r: dict[str, Any]) -> bool:
        return ((not self.priority or r.get("priority") == self.priority)
                and (not self.kind or r.get("kind") == self.kind)
                and (not self.level or str(r.get("level", 1)) == self.level)
                and (not self.stage or r.get("status") == self.stage))


def next_deadline(r: dict[str, Any]) -> tuple[str, float] | None:
    """The case's next deadline nobody has met or breached yet: ``(stage, due)``."""
    if r.get("status") in FINAL_STATUSES:
        return None
    case = r.get("case") or {}
    breached = {b.get("stage") for b in r.get("breaches") or ()}
    pending = []
    if case.get("owner") is None and "owner" not in breached:
        pending.append(("owner", case.get("owner_due")))
    if case.get("pathway") is None and "pathway" not in breached:
        pending.append(("pathway", case.get("pathway_due")))
    if (case.get("pathway") is not None and "recovery" not in breached
            and case.get("verification") is None and case.get("completion") is None):
        pending.append(("recovery", case.get("recovery_due")))
    found = [(stage, t) for stage, text in pending if (t := parse_instant(text)) is not None]
    return min(found, key=lambda s: s[1]) if found else None


class Board:
    """The cases, and the desk's order of the open ones kept as they change: a render is
    one pass over that order (no sort, no parsing), however many cases are open."""

    def __init__(self) -> None:
        self.cases: dict[str, dict[str, Any]] = {}
        # Per escalation id, the latest refusal of an action on it: (action type, reason,
        # detail, when).
        self.refusals: dict[str, tuple[str, str, str, str]] = {}
        self.version = 0  # moves at every change, so that views know when to render again
        self._open: list[tuple[tuple[int, float, str], str]] = []  # (order, id), sorted
        self._placed: dict[str, tuple[int, float, str]] = {}  # id -> its key in _open
        self._closed: list[tuple[str, str]] = []  # (ended, id), sorted
        self._ended: dict[str, str] = {}
        self._counts = {"P1": 0, "P2": 0, "P3": 0, "P4": 0}

    def apply(self, record: dict[str, Any]) -> bool:
        """Take one published record; False if it is older than the one held."""
        eid = record.get("escalation_id")
        if not isinstance(eid, str):
            return False
        held = self.cases.get(eid)
        if held is not None and held.get("revision", 1) >= record.get("revision", 1):
            return False
        if held is not None:
            self._unindex(eid, held)
        self.cases[eid] = record
        self._index(eid, record)
        self.version += 1
        return True

    def _index(self, eid: str, r: dict[str, Any]) -> None:
        if r.get("status") in FINAL_STATUSES:
            ended = _ended(r) or ""
            self._ended[eid] = ended
            bisect.insort(self._closed, (ended, eid))
            return
        key = _order(r)
        self._placed[eid] = key
        bisect.insort(self._open, (key, eid))
        if r.get("priority") in self._counts:
            self._counts[r["priority"]] += 1

    def _unindex(self, eid: str, r: dict[str, Any]) -> None:
        if eid in self._ended:
            _remove(self._closed, (self._ended.pop(eid), eid))
            return
        _remove(self._open, (self._placed.pop(eid), eid))
        if r.get("priority") in self._counts:
            self._counts[r["priority"]] -= 1

    def refused(self, action: dict[str, Any], reason: str, detail: str, at: str) -> None:
        eid = action.get("escalation_id")
        if isinstance(eid, str):
            self.refusals[eid] = (str(action.get("type")), reason, detail, at)
            self.version += 1

    def open_rows(self, f: Filters, now: float,
                  size: int = PAGE_SIZE) -> tuple[list[dict[str, Any]], int]:
        """One page of the open cases the filters admit, in the desk's order, and how many
        there are in all."""
        first, page, total = f.page * size, [], 0
        cases = self.cases
        for _, eid in self._open:
            r = cases[eid]
            if f.admits(r):
                if first <= total < first + size:
                    page.append(r)
                total += 1
        return [view(r, now, self.refusals.get(r["escalation_id"])) for r in page], total

    def closed_today(self, now: float, size: int = PAGE_SIZE) -> list[dict[str, Any]]:
        """The cases closed or resolved on ``now``'s day, the latest first."""
        day = to_datetime(now).date()
        rows = []
        for ended, eid in reversed(self._closed):
            t = parse_instant(ended)
            if t is None or to_datetime(t).date() != day:
                if t is not None and to_datetime(t).date() < day:
                    break
                continue
            rows.append(self.cases[eid])
            if len(rows) == size:
                break
        return [view(r, now, None) for r in rows]

    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def prune(self, now: float) -> int:
        """Let go of the cases closed or resolved before yesterday (the page shows today's):
        how many. A later revision of one would be taken again."""
        day = to_datetime(now - 86_400).strftime("%Y-%m-%d")
        cut = bisect.bisect_left(self._closed, (day, ""))
        gone = self._closed[:cut]
        del self._closed[:cut]
        for _, eid in gone:
            self._ended.pop(eid, None)
            self.cases.pop(eid, None)
            self.refusals.pop(eid, None)
        if gone:
            self.version += 1
        return len(gone)

    def closed_count(self, now: float) -> int:
        """How many cases were closed or resolved on ``now``'s day (or later)."""
        day = to_datetime(now).strftime("%Y-%m-%d")
        return len(self._closed) - bisect.bisect_left(self._closed, (day, ""))


def _remove(items: list[Any], item: Any) -> None:
    i = bisect.bisect_left(items, item)
    if i < len(items) and items[i] == item:
        del items[i]


def _order(r: dict[str, Any]) -> tuple[int, float, str]:
    nxt = next_deadline(r)
    return (_PRIORITY.get(r.get("priority", ""), 9), nxt[1] if nxt else math.inf,
            r.get("detected_at") or "")


def _ended(r: dict[str, Any]) -> str | None:
    if r.get("status") == "resolved":
        return r.get("resolved_at")
    closure = (r.get("case") or {}).get("closure") or {}
    return closure.get("received") or closure.get("at")


def view(r: dict[str, Any], now: float,
         refusal: tuple[str, str, str, str] | None) -> dict[str, Any]:
    """What a row shows: the record's fields a person reads, in words."""
    nxt = next_deadline(r)
    case = r.get("case") or {}
    return {
        "id": r["escalation_id"], "dom_id": "case-" + _dom(r["escalation_id"]),
        "kind": r.get("kind"), "priority": r.get("priority"), "level": r.get("level", 1),
        "status": r.get("status"), "visit_id": r.get("visit_id"),
        "client_id": r.get("client_id"), "worker_ids": r.get("worker_ids") or [],
        "risk_level": r.get("risk_level"), "flags": r.get("risk_flags") or [],
        "scheduled": _clock(r.get("scheduled_start")),
        "detected": _clock(r.get("detected_at")),
        "evidence": evidence_words(r),
        "breaches": [f"{b.get('stage')} (due {_clock(b.get('due'))})"
                     for b in r.get("breaches") or ()],
        "next_stage": nxt[0] if nxt else None, "next_due": nxt[1] if nxt else None,
        "left_s": round(nxt[1] - now) if nxt else None,
        "owner": (case.get("owner") or {}).get("owner_id"),
        "pathway": case.get("pathway"), "verified": case.get("verification") is not None,
        "refusal": refusal, "history": case.get("history") or [],
        "route": r.get("recommended_route"),
    }


def _dom(eid: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in eid)


def _clock(text: Any) -> str:
    t = parse_instant(text)
    return to_datetime(t).strftime("%H:%M") if t is not None else "--:--"


def evidence_words(r: dict[str, Any]) -> str:
    """The evidence as a person says it: "18 min after the start, no check-in"."""
    ev = r.get("evidence") or {}
    kind = r.get("kind")
    words: list[str] = []
    if kind in ("late", "missed"):
        minutes = ev.get("minutes_after_start")
        absent = ev.get("workers_absent") or []
        lead = f"{minutes:.0f} min after the start" if isinstance(minutes, int | float) else (
            "after its deadline")
        words.append(f"{lead}, no check-in" + (f" from {', '.join(absent)}" if absent else ""))
    elif kind == "no_check_out":
        words.append(f"checked in at {_clock(ev.get('checked_in_at'))}, no check-out")
    elif kind in ("location_mismatch", "location_unverified"):
        reason = ev.get("reason")
        if "distance_to_fence_m" in ev and reason is None:
            d = float(ev["distance_to_fence_m"])
            where = f"{d / 1000:.1f} km" if d >= 1000 else f"{d:.0f} m"
            words.append(f"fix {where} from the fence (±{ev.get('accuracy_m', '?')} m)")
        elif reason == "accuracy_too_poor":
            words.append(f"fix too poor to place (±{ev.get('accuracy_m', '?')} m)")
        elif reason == "caller_not_on_roster":
            words.append("call from a number not on the roster")
        elif reason == "tag_not_on_roster":
            words.append("tag not on the roster")
    elif kind == "wrong_worker":
        words.append(f"{ev.get('worker_id')} checked in; rostered "
                     f"{', '.join(ev.get('rostered_worker_ids') or [])}")
    elif kind in ("shortened", "extended"):
        actual, planned = ev.get("actual_duration_s"), ev.get("scheduled_duration_s")
        if isinstance(actual, int | float) and isinstance(planned, int | float):
            words.append(f"stayed {actual / 60:.0f} of {planned / 60:.0f} min")
    elif kind == "unscheduled":
        words.append("a check-in with no visit booked")
    elif kind == "at_risk":
        lateness = ev.get("predicted_lateness_s")
        words.append(f"predicted {lateness / 60:.0f} min after the start"
                     if isinstance(lateness, int | float) else "predicted late")
    cause = ev.get("cause")
    cause = str(cause).replace("_", " ") if cause and cause != "unknown" else None
    if kind in ("late", "missed", "at_risk") and ev.get("expected_arrival"):
        words.append(f"expected {_clock(ev['expected_arrival'])}"
                     + (f" ({cause})" if cause else ""))
    elif kind in ("late", "missed") and cause:
        words.append(f"cause: {cause}")
    delay = ev.get("delivery_delay_s")
    if isinstance(delay, int | float) and delay > 60:
        words.append(f"phone offline: event delivered {delay / 60:.0f} min late")
    held = ev.get("input_held_s")
    if isinstance(held, int | float) and held >= 1:
        words.append(f"raised {held:.0f} s late: its input was behind")
    return "; ".join(words)
