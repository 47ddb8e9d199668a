"""A simulated day: the roster, what happens on the day, and the messages that say so.

Workers follow their runs: they arrive when the last visit and the drive allow, so one
worker's delay is carried down the rest of the run. Failures are injected at configured
rates; every message that results is stamped with the simulated instant it is sent, and the
ledger (:mod:`simulator.ledger`) derives the escalations the monitor must raise from the same
facts.

Arrivals, departures and deliveries are kept a guard band away from every deadline of their
visit: an event that reaches Kafka a second before a deadline and is processed a second
after it has no single right answer, and a ground truth must have one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from simulator.region import CONTRACTS, Client, Region, build_region, offset
from simulator.rostering import Roster, Visit, build_roster, travel_s
from stream.timeutil import format_instant

DEFAULTS = {"late_after_s": 900.0, "missed_after_s": 1800.0, "short_long_after_s": 900.0,
            "no_checkout_after_s": 1800.0}
RADIUS_M = 200.0


@dataclass
class Rates:
    """Per visit (or per worker at a visit) probabilities, and per-hour counts."""

    delay: float = 0.015  # a worker held up (traffic, a fall at a previous visit): 20-50 min
    missed: float = 0.01
    car_park: float = 0.015  # GPS check-in from the car park or the wrong street
    poor_fix: float = 0.015
    wrong_phone: float = 0.01
    wrong_worker: float = 0.005
    shortened: float = 0.02
    extended: float = 0.02
    no_access: float = 0.004  # checked in at the door, not let in: gone within 1-4 minutes
    missing_check_out: float = 0.01
    cancel: float = 0.01
    late_cancel: float = 0.002
    reassign: float = 0.01
    move: float = 0.01
    duplicate: float = 0.005
    offline: float = 0.01
    clock_skew: float = 0.01  # device clock off by up to 3 minutes
    bad_clock: float = 0.001  # device clock 20-60 minutes ahead: rejected
    no_visit_id: float = 0.3  # events that leave the visit to be matched
    malformed_per_hour: float = 6.0
    unscheduled_per_hour: float = 2.0


@dataclass
class SimConfig:
    seed: int = 1
    clients: int = 20_000
    workers: int = 2_500
    visits_per_client: float = 3.2
    double_up_rate: float = 0.05
    date: str = "2026-11-23"
    start_hour: float = 6.0
    hours: float = 18.0
    # Days rostered from ``date`` on: a week shows the trends a day cannot (safeguarding's
    # seven-day window, the management report). ``hours`` counts from the first day's
    # ``start_hour``.
    days: int = 1
    speed: float = 60.0
    batch_size: int = 100
    future_tolerance_s: float = 300.0
    unscheduled_grace_s: float = 120.0
    # A duty desk acts on the missed visits (simulator/desk.py).
    desk: bool = True
    # The workers predict their runs (ECM_RUNS), graded by simulator/runs.py.
    runs: bool = False
    rates: Rates = field(default_factory=Rates)

    @property
    def day_start(self) -> float:
        return datetime.fromisoformat(self.date).replace(tzinfo=UTC).timestamp()

    @property
    def window(self) -> tuple[float, float]:
        start = self.day_start + self.start_hour * 3600
        return start, start + self.hours * 3600

    @property
    def guard_s(self) -> float:
        """Simulated seconds kept between an event and a deadline: enough for the sweep
        interval and the processing delay, in wall seconds times the speed."""
        return max(120.0, 3.0 * self.speed)

    @property
    def lead_s(self) -> float:
        """Simulated time between publishing the roster and the window opening."""
        return max(600.0, 20.0 * self.speed)


@dataclass
class EventFact:
    doc: dict[str, Any]
    worker: str
    type: str
    occurred: float  # as stamped by the device
    received: float  # when it reaches Kafka
    accepted: bool = True
    reject_reason: str | None = None


@dataclass
class VisitFact:
    visit: Visit
    doc: dict[str, Any]  # the roster record in force after the last change
    initial: dict[str, Any] = field(default_factory=dict)  # the record published first
    cancelled_at: float | None = None
    missed: bool | None = None
    events: list[EventFact] = field(default_factory=list)
    # The truth of the workers' runs (simulator/runs.py): per worker, when they truly came
    # and left; for the first rostered worker, the visit of their run they came from and
    # the drive from it, and a delay met on the way (0: none).
    came: dict[str, tuple[float, float]] = field(default_factory=dict)
    leg: tuple[str, float] | None = None
    en_route_delay: float = 0.0
    # A worker who checked in at the home and was not let in (visit records' truth).
    no_access: bool = False
    # The roster change sent before the day: ("reassigned" or "moved", when it was sent).
    changed: tuple[str, float] | None = None

    def threshold(self, name: str) -> float:
        return self.visit.thresholds.get(name, DEFAULTS[name])


@dataclass
class Message:
    at: float  # simulated send instant
    topic: str  # "roster" | "events"
    records: list[dict[str, Any]] | None = None
    raw: bytes | None = None


@dataclass
class Scenario:
    config: SimConfig
    region: Region
    roster: Roster
    facts: dict[str, VisitFact]
    messages: list[Message]
    malformed: dict[str, int]
    duplicates: list[tuple[float, EventFact]]  # (sent at, the event sent again)
    unscheduled: list[EventFact]


def build_scenario(config: SimConfig) -> Scenario:
    rng = random.Random(config.seed)
    region = build_region(rng, config.clients, config.workers)
    roster = build_roster(rng, region, config.day_start, config.visits_per_client,
                          config.double_up_rate)
    for d in range(1, config.days):
        more = build_roster(rng, region, config.day_start + d * 86400.0,
                            config.visits_per_client, config.double_up_rate, prefix=f"d{d}-")
        roster.visits += more.visits
        for worker, run in more.runs.items():
            roster.runs[worker] += run
    if config.days > 1:  # a bed call past midnight may follow the next day's first
        for run in roster.runs.values():
            run.sort(key=lambda v: v.start)
    return _Day(config, rng, region, roster).play()


class _Day:
    def __init__(self, config: SimConfig, rng: random.Random, region: Region,
                 roster: Roster) -> None:
        self.c = config
        self.r = config.rates
        self.rng = rng
        self.region = region
        self.roster = roster
        self.start, self.end = config.window
        self.publish_at = self.start - config.lead_s * 0.5
        self.facts: dict[str, VisitFact] = {}
        self.messages: list[Message] = []
        self.malformed: dict[str, int] = {}
        self.duplicates: list[tuple[float, EventFact]] = []
        self.unscheduled: list[EventFact] = []
        self.bank = 0

    def play(self) -> Scenario:
        monitored = [v for v in self.roster.visits if self.start <= v.start < self.end]
        skip: set[tuple[str, str]] = set()  # (visit, worker) pairs the worker does not do
        for v in monitored:
            contract = CONTRACTS[v.client.contract]
            if contract[1] is not None:
                v.thresholds = {"late_after_s": contract[1], "missed_after_s": contract[2]}
            fact = VisitFact(v, _visit_doc(v))
            self.facts[v.visit_id] = fact
            self._roster_changes(fact, skip)
        self.messages.append(Message(self.publish_at, "roster",
                                     [self.facts[v.visit_id].initial for v in monitored]))
        for worker, run in self.roster.runs.items():
            self._work(worker, run, skip)
        self._bad_input()
        self._unscheduled()
        self.messages.sort(key=lambda m: m.at)
        return Scenario(self.c, self.region, self.roster, self.facts, self.messages,
                        self.malformed, self.duplicates, self.unscheduled)

    # ---- roster changes -------------------------------------------------------------------

    def _roster_changes(self, fact: VisitFact, skip: set[tuple[str, str]]) -> None:
        rng, r, v = self.rng, self.r, fact.visit
        fact.initial = dict(fact.doc)
        roll = rng.random()
        early = v.start - rng.uniform(3600, 3 * 3600)
        if early < self.publish_at:
            early = self.publish_at + 1
        if early >= v.start - 1800:
            return  # too close to the start to be a planned change
        if roll < r.cancel:
            fact.cancelled_at = early
            fact.doc = dict(fact.doc, status="cancelled")
            self._send_roster(early, fact.doc)
            skip.update((v.visit_id, w) for w in v.workers)
        elif roll < r.cancel + r.reassign:
            for w in v.workers:
                skip.add((v.visit_id, w))
            bank = f"bank{self.bank:04d}"
            self.bank += 1
            fact.doc = dict(fact.doc, worker_ids=[bank, *v.workers[1:]])
            fact.changed = ("reassigned", early)
            self._send_roster(early, fact.doc)
            v.workers = [bank, *v.workers[1:]]
            arrive = v.start + rng.uniform(-240, 240)
            self._attend(fact, bank, arrive, v.start, prev=None, bank=True)
        elif roll < r.cancel + r.reassign + r.move:
            shift = rng.choice((30, 45, 60)) * 60.0
            v.start += shift
            v.end += shift
            fact.doc = dict(fact.doc, scheduled_start=format_instant(v.start),
                            scheduled_end=format_instant(v.end))
            fact.changed = ("moved", early)
            self._send_roster(early, fact.doc)

    def _send_roster(self, at: float, doc: dict[str, Any]) -> None:
        self.messages.append(Message(at, "roster", [doc]))

    # ---- the day's work ---------------------------------------------------------------------

    def _work(self, worker: str, run: list[Visit], skip: set[tuple[str, str]]) -> None:
        rng, r = self.rng, self.r
        free = self.c.day_start
        prev: Client | None = None
        came_from: Visit | None = None
        for v in run:
            fact = self.facts.get(v.visit_id)
            if (v.visit_id, worker) in skip:
                continue
            if fact is not None and fact.missed is None:
                fact.missed = rng.random() < r.missed
                if fact.missed and rng.random() < r.late_cancel / max(r.missed, 1e-9):
                    at = v.start + fact.threshold("missed_after_s") + rng.uniform(600, 1800)
                    fact.cancelled_at = at
                    fact.doc = dict(fact.doc, status="cancelled")
                    self._send_roster(at, fact.doc)
            if fact is not None and fact.missed:
                continue
            drive = travel_s(prev, v.client)
            arrive = max(v.start + rng.uniform(-240, 240), free + drive)
            delay = 0.0
            if rng.random() < r.delay:
                delay = rng.uniform(1200, 3000)
                arrive += delay
            if fact is None:  # before the window: the run goes on, nothing is sent
                free = arrive + v.duration
            else:
                free = self._attend(fact, worker, arrive, v.start, prev)
                if came_from is not None and worker == v.workers[0]:
                    fact.leg = (came_from.visit_id, drive)
                    fact.en_route_delay = delay
            prev = v.client
            came_from = v

    def _attend(self, fact: VisitFact, worker: str, arrive: float, start: float,
                prev: Client | None, bank: bool = False) -> float:
        """One worker's visit: check-in, check-out; returns when they leave."""
        rng, r, v = self.rng, self.r, fact.visit
        g = self.c.guard_s
        deadlines = [v.start + fact.threshold("late_after_s"),
                     v.start + fact.threshold("missed_after_s")]
        # What the device will report: its clock may be off.
        skew = rng.uniform(-180, 180) if rng.random() < r.clock_skew else 0.0
        if rng.random() < r.bad_clock:
            skew = rng.uniform(1200, 3600)
        arrive = _clear(arrive + skew, deadlines, g) - skew
        sched = v.duration
        sl = fact.threshold("short_long_after_s")
        roll = rng.random()
        if roll < r.shortened:
            stay = max(300.0, sched - sl - rng.uniform(300, 900))
        elif roll < r.shortened + r.extended:
            stay = sched + sl + rng.uniform(300, 900)
        elif roll < r.shortened + r.extended + r.no_access:
            stay = rng.uniform(60, 240)
            fact.no_access = True
        else:
            stay = max(300.0, sched + rng.uniform(-240, 240))
        leave = arrive + stay
        fact.came[worker] = (arrive, leave)
        noc = v.end + fact.threshold("no_checkout_after_s")
        # A phone with a badly wrong clock is online: its stamps are judged against receipt.
        offline = skew < 600 and rng.random() < r.offline
        who = worker
        if not bank and rng.random() < r.wrong_worker:
            who = f"w-unrostered-{rng.randrange(10_000):04d}"
        # Not let in: checked in and out at the door, where the monitor can see it.
        shut_out = stay < 300.0
        method, fix = self._method(v.client, placed=shut_out)
        for etype, t in (("check_in", arrive), ("check_out", leave)):
            if etype == "check_out" and rng.random() < r.missing_check_out and not shut_out:
                continue
            stamp = t + skew
            received = (leave + rng.uniform(1200, 3600)) if offline else t + rng.uniform(1, 8)
            received = _clear(received, [*deadlines, noc], g)
            if offline and etype == "check_in":
                received += 1.0  # uploaded after its check-out: out of order
            doc = self._event_doc(fact, who, etype, stamp, method, fix)
            ev = EventFact(doc, who, etype, stamp, received)
            if stamp > received + self.c.future_tolerance_s:
                ev.accepted, ev.reject_reason = False, "clock_in_future"
            fact.events.append(ev)
            self.messages.append(Message(received, "events", [doc]))
            if rng.random() < r.duplicate:
                again = received + rng.uniform(1, 30)
                self.duplicates.append((again, ev))
                self.messages.append(Message(again, "events", [doc]))
        return leave

    def _method(self, client: Client, placed: bool = False) -> tuple[str, dict[str, Any]]:
        """A check-in's method and fix; ``placed``: at the home, as the roster places it."""
        rng, r = self.rng, self.r
        roll = 1.0 if placed else rng.random()
        if roll < r.wrong_phone:
            return "telephony", {"caller_number": f"07700 {rng.randrange(900000, 999999)}"}
        if roll < r.wrong_phone + r.car_park:
            lat, lon = offset(client.lat, client.lon, rng.uniform(450, 1500),
                              rng.uniform(0, 6.283))
            return "gps", {"lat": round(lat, 6), "lon": round(lon, 6),
                           "accuracy_m": round(rng.uniform(5, 20), 1)}
        if roll < r.wrong_phone + r.car_park + r.poor_fix:
            lat, lon = offset(client.lat, client.lon, RADIUS_M + rng.uniform(-30, 30),
                              rng.uniform(0, 6.283))
            return "gps", {"lat": round(lat, 6), "lon": round(lon, 6),
                           "accuracy_m": round(rng.uniform(100, 250), 1)}
        kind = rng.choices(("gps", "telephony", "nfc"), (75, 15, 10))[0]
        if kind == "telephony":
            return kind, {"caller_number": client.phone}
        if kind == "nfc":
            return kind, {"tag_id": client.tag}
        lat, lon = offset(client.lat, client.lon, rng.uniform(0, 40), rng.uniform(0, 6.283))
        return "gps", {"lat": round(lat, 6), "lon": round(lon, 6),
                       "accuracy_m": round(rng.uniform(4, 25), 1)}

    def _event_doc(self, fact: VisitFact, worker: str, etype: str, stamp: float, method: str,
                   fix: dict[str, Any]) -> dict[str, Any]:
        v = fact.visit
        doc: dict[str, Any] = {
            "event_id": f"{v.visit_id}-{worker}-{etype}", "type": etype,
            "client_id": v.client.client_id, "worker_id": worker,
            "occurred_at": format_instant(stamp), "method": method,
            "gateway_id": f"gw-{method}", **fix}
        if self.rng.random() >= self.r.no_visit_id or worker.startswith(("w-unr", "bank")):
            doc["visit_id"] = v.visit_id
        return doc

    # ---- input that must be refused, and visits nobody booked -------------------------------

    def _bad_input(self) -> None:
        rng = self.rng
        hours = (self.end - self.start) / 3600
        n = round(self.r.malformed_per_hour * hours)
        kinds = ("invalid_json", "missing_field", "invalid_coordinates", "end_before_start")
        for i in range(n):
            kind = kinds[i % len(kinds)]
            at = rng.uniform(self.start, self.end - self.c.guard_s)
            self.malformed[kind] = self.malformed.get(kind, 0) + 1
            if kind == "invalid_json":
                self.messages.append(Message(at, "events", raw=b'{"event_id": "cut-off", "ty'))
            elif kind == "missing_field":
                self.messages.append(Message(at, "events", [{
                    "event_id": f"bad-{i}", "type": "check_in", "client_id": "c0000000",
                    "worker_id": "w00000", "method": "manual"}]))
            elif kind == "invalid_coordinates":
                self.messages.append(Message(at, "events", [{
                    "event_id": f"bad-{i}", "type": "check_in", "client_id": "c0000000",
                    "worker_id": "w00000", "method": "gps", "lat": 95.0, "lon": 1.0,
                    "occurred_at": format_instant(at)}]))
            else:
                self.messages.append(Message(at, "roster", [{
                    "visit_id": f"bad-{i}", "client_id": "c0000000", "worker_ids": ["w00000"],
                    "scheduled_start": format_instant(at + 3600),
                    "scheduled_end": format_instant(at), "location": {"lat": 52.6, "lon": 1.3}}]))

    def _unscheduled(self) -> None:
        rng = self.rng
        hours = (self.end - self.start) / 3600
        for i in range(round(self.r.unscheduled_per_hour * hours)):
            at = rng.uniform(self.start, self.end - 2 * self.c.guard_s - self.c.unscheduled_grace_s)
            doc = {"event_id": f"adhoc-{i}", "type": "check_in",
                   "client_id": f"c-unbooked-{i:03d}", "worker_id": f"w{rng.randrange(99999):05d}",
                   "occurred_at": format_instant(at), "method": "manual"}
            self.unscheduled.append(EventFact(doc, doc["worker_id"], "check_in", at, at))
            self.messages.append(Message(at, "events", [doc]))


def _clear(t: float, deadlines: list[float], guard: float) -> float:
    """Move ``t`` out of the guard band of every deadline (later, never earlier)."""
    moved = True
    while moved:
        moved = False
        for d in deadlines:
            if d - guard < t < d + guard:
                t = d + guard
                moved = True
    return t


def _visit_doc(v: Visit) -> dict[str, Any]:
    c = v.client
    doc = {
        "visit_id": v.visit_id, "client_id": c.client_id, "worker_ids": list(v.workers),
        "scheduled_start": format_instant(v.start), "scheduled_end": format_instant(v.end),
        "location": {"lat": c.lat, "lon": c.lon}, "geofence_radius_m": RADIUS_M,
        "risk_level": c.risk_level, "lives_alone": c.lives_alone,
        "cognitive_impairment": c.cognitive_impairment, "time_critical": v.time_critical,
        "client_phones": [c.phone], "nfc_tags": [c.tag],
        "contract_id": CONTRACTS[c.contract][0],
    }
    contract = CONTRACTS[c.contract]
    if contract[1] is not None:
        doc["late_after_s"] = contract[1]
        doc["missed_after_s"] = contract[2]
    return doc
