"""The contract's records: what a validated roster record and event are, where a record came
from, and a rejection. The checks that build them live in :mod:`stream.contract.checks`
(the reference) and :mod:`stream.contract.onepass` (its twin, from a message's bytes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from sys import intern
from typing import Annotated, Any, Literal

import msgspec

from stream.timeutil import AwareDatetime

SCHEMA_VERSION = 1

RISK_LEVELS = ("low", "medium", "high", "critical")
# A visit's person flags, as the roster names them; an escalation carries those set.
RISK_FLAGS = ("lives_alone", "cognitive_impairment", "time_critical")
EVENT_TYPES = ("check_in", "check_out")
METHODS = ("gps", "telephony", "nfc", "qr", "manual")
VISIT_STATUSES = ("scheduled", "cancelled")
# What an escalation can be about: each is decided in stream/rules/ (docs/rules.md).
ESCALATION_KINDS = ("missed", "late", "no_check_out", "shortened", "location_mismatch",
                    "wrong_worker", "unscheduled", "location_unverified", "extended",
                    "at_risk", "safeguarding_review")

# A visit longer than this is a roster error (the EVV aggregators' rule: at most 25 hours).
MAX_VISIT_S = 25 * 3600.0
DEFAULT_RADIUS_M = 200.0
# Longest identifier accepted: ids are keys, not documents. Also the longest phone number,
# tag, contract or gateway id.
MAX_ID_LEN = 200
# Most phone numbers or tags a visit lists, and positions its polygon fence has.
MAX_LIST = 50
MAX_POSITIONS = 10_000
THRESHOLDS = ("late_after_s", "missed_after_s", "short_long_after_s", "no_checkout_after_s")
# The types the one-pass decode checks (stream/contract/onepass.py).
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LEN)]
Threshold = Annotated[float, msgspec.Meta(gt=0, le=MAX_VISIT_S)]
Lat = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
Lon = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]


# The per-record classes are msgspec structs the garbage collector does not track
# (gc=False): one of each is built for every record, a worker holds a million visits, and
# the collector walked every tracked one at each collection (stream/worker/heap.py: a sixth of a
# roster load's time went to that walk). They hold strings, numbers, tuples of them and
# decoded JSON, never themselves, so they can be part of no reference cycle. They are not
# frozen: a frozen class pays for it in every __init__.
class Source(msgspec.Struct, gc=False, array_like=True):
    """Where a record came from: enough to find its bytes again and to tell a replay.
    Written in a changelog as ``[topic, partition, offset, index]`` (``array_like``)."""

    topic: str
    partition: int
    offset: int
    index: int = 0

    def as_list(self) -> list[Any]:
        return [self.topic, self.partition, self.offset, self.index]

    @classmethod
    def from_list(cls, v: list[Any]) -> Source:
        return cls(str(v[0]), int(v[1]), int(v[2]), int(v[3]))

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition,
                "offset": self.offset, "index": self.index}


# A case's stages (stream/rules/cases.py), in order; "resolved" (the visit was attended
# after all, or cancelled) and "closed" (people closed it on evidence) are final.
CASE_STATUSES = ("open", "acknowledged", "recovery_assigned", "recovery_completed", "closed",
                 "resolved")
FINAL_STATUSES = frozenset({"closed", "resolved"})
# What a duty desk or case system may write on ecm.actions (schemas/action.schema.json).
ACTION_TYPES = ("acknowledge", "assign_recovery", "record_decision", "complete_recovery",
                "close")
RECOVERY_CODES = ("immediate_replacement", "delayed_recovery", "emergency_escalation",
                  "family_or_neighbour", "welfare_call", "client_declined")
# Codes whose recovery needs no worker sent to the home.
NO_WORKER_CODES = frozenset({"family_or_neighbour", "welfare_call", "client_declined"})
OUTCOME_CODES = ("recovered", "recovered_late", "client_declined", "no_action_needed")
# Outcomes that claim no recovery: they close on a recorded decision.
NO_RECOVERY_OUTCOMES = frozenset({"client_declined", "no_action_needed"})
VALIDATION_STATUSES = ("validated", "outstanding_risk")
BREACH_STAGES = ("owner", "pathway", "recovery", "closure")
MAX_LEVEL = 3


class Case(msgspec.Struct, gc=False, kw_only=True):
    """An escalation's case, as each snapshot carries it (every field written, null until
    it is known). Instants are RFC 3339. A new escalation's case shares its empty lists."""

    owner_due: str | None
    pathway_due: str | None
    recovery_due: str | None = None
    owner: dict[str, Any] | None = None
    pathway: dict[str, Any] | None = None
    decisions: tuple[dict[str, Any], ...] = ()
    completion: dict[str, Any] | None = None
    verification: dict[str, Any] | None = None
    # Arrivals at the visit by anyone but the recovery worker, once a pathway was assigned.
    arrivals: tuple[dict[str, Any], ...] = ()
    closure: dict[str, Any] | None = None
    # Every action applied, in order: its id, type, who, when decided and when received,
    # and where it came from (a replay from the same position is skipped).
    history: tuple[dict[str, Any], ...] = ()


class RosterChange(msgspec.Struct, gc=False, kw_only=True):
    """A visit record's roster change (``visit.schema.json``)."""

    change: str  # "reassigned", "moved" or "cancelled"
    at: str
    before_start_s: float
    late: bool


class WorkerVisit(msgspec.Struct, gc=False, kw_only=True):
    """A worker who came, as a visit record shows them."""

    worker_id: str
    role: str  # "rostered" or "substitute"
    checked_in_at: str | None
    check_in_method: str | None
    checked_out_at: str | None
    check_out_method: str | None
    duration_s: float | None


class Classification(msgspec.Struct, gc=False, kw_only=True):
    """What the evidence suggests of a visit (stream/rules/classification.py)."""

    service_side_disruption: str
    disruption_evidence: tuple[str, ...]
    suggested_classification: str | None
    decided: None
    note: str


class VisitRecord(msgspec.Struct, gc=False, kw_only=True):
    """A settled visit as ``ecm.visits`` carries it (``schemas/visit.schema.json``), keyed by
    its ``visit_id``: built by stream/rules/visit_records.py, encoded once when published.
    Every field is written, null where unknown. A struct, not a dict: a day writes one per
    visit, and a struct is built and encoded in a fraction of the time."""

    schema_version: int
    visit_id: str
    client_id: str
    contract_id: str | None
    settled_at: str
    outcome: str
    timeliness: str
    scheduled_start: str
    scheduled_end: str
    scheduled_duration_s: float
    rostered_worker_ids: tuple[str, ...]
    roster_changes: tuple[RosterChange, ...]
    workers: tuple[WorkerVisit, ...]
    short_staffed: bool
    arrived_at: str | None
    delayed_s: float | None
    actual_duration_s: float | None
    extended: bool
    location: str | None
    escalations: tuple[dict[str, Any], ...]
    cause: str | None
    contactability: str
    classification: Classification


class Escalation(msgspec.Struct, gc=False, kw_only=True, omit_defaults=True):
    """An escalation as ``ecm.escalations`` carries it (``schemas/escalation.schema.json``),
    keyed by its ``escalation_id``: built by the rules, encoded once when it is published.
    Instants are RFC 3339 strings; ``resolved_at`` and ``resolution`` are written once it is
    resolved. Each change publishes the whole record again (a snapshot), its ``revision``
    one higher: the opening is revision 1."""

    schema_version: int
    escalation_id: str
    kind: str
    status: str  # CASE_STATUSES: "open", then a case's stages, or "resolved"
    visit_id: str
    client_id: str
    worker_ids: list[str]
    contract_id: str | None
    scheduled_start: str | None
    scheduled_end: str | None
    deadline: str  # the instant the rule became true
    detected_at: str
    priority: str
    risk_level: str
    service_impact_score: int
    recommended_route: str
    respond_by: str
    evidence: dict[str, Any]
    revision: int
    level: int  # 1 the duty desk; each breach raises it, to MAX_LEVEL
    breaches: tuple[dict[str, Any], ...]
    case: Case
    # The person's risk flags the roster gave (RISK_FLAGS), so that whoever reads the
    # escalation sees who is at risk without the roster.
    risk_flags: tuple[str, ...] = ()
    resolved_at: str | None = None
    resolution: str | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    detail: str
    raw: bytes
    source: Source


class _Record(msgspec.Struct, gc=False, eq=False):
    """A validated record: two are equal when their fields are, whatever ``raw`` they came
    from (the last field, in every record class)."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and _fields(self)[:-1] == _fields(other)[:-1]

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]


_fields = msgspec.structs.astuple


class Visit(_Record, array_like=True):
    """One scheduled visit, validated. Instants are epoch seconds, UTC. Worker ids are
    interned (here and in the marks a visit holds, not in events, most of which are
    garbage once applied): a worker has many visits a day, and a tracked visit would
    otherwise hold its own copy of each id, as would each check-in. A changelog
    writes it as the array of its fields (``array_like``; stream/state/changelog.py)."""

    visit_id: str
    client_id: str
    worker_ids: tuple[str, ...]
    start: float
    end: float
    lat: float
    lon: float
    radius_m: float = DEFAULT_RADIUS_M
    # Polygon rings as ((lon, lat), ...) tuples: the exterior first, then holes.
    polygon: tuple[tuple[tuple[float, float], ...], ...] | None = None
    risk_level: str = "medium"
    lives_alone: bool = False
    cognitive_impairment: bool = False
    time_critical: bool = False
    client_phones: tuple[str, ...] = ()
    nfc_tags: tuple[str, ...] = ()
    contract_id: str | None = None
    late_after_s: float | None = None
    missed_after_s: float | None = None
    short_long_after_s: float | None = None
    no_checkout_after_s: float | None = None
    cancelled: bool = False
    # The record as received: its decoded object, or ``(message value, index)`` when it was
    # validated straight from the bytes (Codec.raw_object). None once it is in the changelog.
    raw: dict[str, Any] | tuple[bytes, int] | None = msgspec.field(default_factory=dict)


class Event(_Record):
    """One check-in or check-out, validated.

    The one-pass path decodes a message's events straight into this struct, whose types
    are the wire's: ``occurred_at`` arrives as the aware datetime the decode parsed and is
    held as its epoch seconds once the struct's checks pass (``onepass.event_wire``); one
    struct an event instead of a wire struct and a copy of it."""

    event_id: Id
    type: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    client_id: Id
    worker_id: Id
    occurred_at: AwareDatetime | float
    # A literal: the decode checks it, and every event shares its method's one string
    # (a visit's mark holds it).
    method: Literal[METHODS]  # type: ignore[valid-type]
    visit_id: Id | None = None
    lat: Lat | None = None
    lon: Lon | None = None
    accuracy_m: Annotated[float, msgspec.Meta(ge=0.0, le=1_000_000.0)] | None = None
    caller_number: str | None = None
    tag_id: str | None = None
    gateway_id: Annotated[str, msgspec.Meta(max_length=MAX_ID_LEN)] | None = None
    # When it reached Kafka, on the worker clock (its message's timestamp, else when the
    # worker read it): a deadline is judged by what had reached Kafka by then. Set by the
    # detector, whatever the message held under the name.
    received: float = msgspec.field(default=0.0, name="\u00a0received")
    # Its decoded object, or ``(message value, index)`` (Codec.raw_object). Set after a decode,
    # whatever the message held under the name (which no producer writes).
    raw: dict[str, Any] | tuple[bytes, int] | None = msgspec.field(default=None,
                                                                     name="\u00a0raw")


class WorkerIds:
    """Visits' worker ids, interned, as tuples that visits with the same workers share.

    A roster has a few workers for every hundred visits: sharing one tuple per worker (or
    pair) saves a tuple a visit (56 bytes), and that tuple's walk by the collector when a
    roster batch settles (stream/worker/heap.py). Written out for one or two, as
    ``tuple(map(intern, ...))`` costs four times interning each. Bounded: a provider has
    thousands of workers, a nation hundreds of thousands; past the bound they are shared
    again from scratch (the ids stay valid: this is a bound, not a cache policy).
    """

    __slots__ = ("_held", "_one", "_two")

    def __init__(self, held: int = 1 << 20) -> None:
        self._held = held
        self._one: dict[str, tuple[str]] = {}
        self._two: dict[tuple[str, str], tuple[str, str]] = {}

    def __call__(self, workers: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        if len(workers) == 1:
            w = workers[0]
            held = self._one.get(w)
            if held is None:
                if len(self._one) >= self._held:
                    self._one.clear()
                held = self._one[w] = (intern(w),)
            return held
        pair = (workers[0], workers[1])
        both = self._two.get(pair)
        if both is None:
            if len(self._two) >= self._held:
                self._two.clear()
            both = self._two[pair] = (intern(pair[0]), intern(pair[1]))
        return both


class Action(_Record, kw_only=True):
    """What a person decided about an escalation's case (``ecm.actions``), validated:
    the fields its type requires are present. Instants are epoch seconds, UTC."""

    action_id: str
    escalation_id: str
    client_id: str
    type: str
    at: float
    by: str
    owner_id: str | None = None
    recovery_action_code: str | None = None
    assigned_worker_id: str | None = None
    recovery_deadline: float | None = None
    action_type: str | None = None
    reviewer_id: str | None = None
    service_outcome: str | None = None
    member_condition: str | None = None
    validation_status: str | None = None
    final_outcome_code: str | None = None
    note: str | None = None
    raw: dict[str, Any] | None = None


def lifecycle(doc: Mapping[str, Any]) -> str | None:
    """What a published escalation record says to a consumer that follows only ``open``
    and ``resolved``: "open" for its opening (revision 1), "resolved" for its resolution,
    None for a change to its case (stream/rules/cases.py). A record from before cases
    carries no revision: its status."""
    status = doc.get("status")
    if status == "resolved":
        return "resolved"
    return "open" if doc.get("revision", 1) == 1 and status == "open" else None
