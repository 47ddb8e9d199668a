"""One frozen settings object, built once from ``ECM_*`` environment variables.

Nothing else in the project reads the environment. Every field is one variable: the field
``late_after_s`` is ``ECM_LATE_AFTER_S``. Command-line options override the environment by
building a new object with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from stream import security
from stream.clock import Clock, ScaledClock, SystemClock
from stream.contract.records import ESCALATION_KINDS
from stream.errors import SettingsError

PREFIX = "ECM_"

_STORES = ("memory://", "rocksdb://")
_LOG_LEVELS = ("crit", "error", "warn", "info", "debug")
_INPUT_LANES = ("batch", "streams")
_LOG_FORMATS = ("text", "json")
_COMPRESSIONS = ("zstd", "lz4", "gzip", "none")


@dataclass(frozen=True)
class Settings:
    """Everything a worker, the router and the tools need to agree on."""

    broker: str = "127.0.0.1:9092"
    # How every client connects (stream/security.py): PLAINTEXT, SSL, SASL_PLAINTEXT or
    # SASL_SSL; SASL's mechanism PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512. The password from
    # the variable or, better, a file; it is never printed. TLS trusts the system's roots
    # or the CA file, and presents a client certificate where both files are set.
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    sasl_password_file: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_check_hostname: bool = True
    app_id: str = "ecm"
    # Partitions of ecm.work, ecm.state and ecm.escalations: they must be equal, because a
    # visit's state, its work and its escalations live in the same partition number.
    partitions: int = 8
    topic_roster: str = "ecm.roster"
    topic_events: str = "ecm.events"
    # What people decided about escalations' cases (stream/rules/cases.py).
    topic_actions: str = "ecm.actions"
    topic_escalations: str = "ecm.escalations"
    topic_deadletter: str = "ecm.deadletter"
    topic_work: str = "ecm.work"
    topic_state: str = "ecm.state"
    store: str = "memory://"
    datadir: str = ".ecm-data"
    web_port: int = 6066
    # The web server serves /metrics, /healthz and /readyz; 0.0.0.0 in a container.
    web_host: str = "127.0.0.1"
    # Default thresholds, in seconds; a roster record may override each per visit.
    late_after_s: float = 900.0
    missed_after_s: float = 1800.0
    short_long_after_s: float = 900.0
    no_checkout_after_s: float = 1800.0
    # How long an event whose visit is not (yet) on the roster waits for a late roster
    # record before it is judged unscheduled or unknown.
    unscheduled_grace_s: float = 120.0
    # Device clocks drift and phones upload late. An event stamped more than this far ahead
    # of the worker's clock cannot be true; one older than max_event_age_s is a replay of
    # history, not monitoring.
    future_tolerance_s: float = 300.0
    max_event_age_s: float = 172800.0
    # An event may fall this far before the scheduled start or after the scheduled end and
    # still be matched to the visit (early arrivals, late check-outs).
    match_window_s: float = 7200.0
    # Smartphones report a 68% radius; one that reports none is assumed this poor.
    default_gps_accuracy_m: float = 65.0
    # Sweep cadence bounds detection latency: a deadline is raised at most this long late
    # (plus the sweep's own duration); 0.5 s keeps it well inside the 2 s promise.
    sweep_interval_s: float = 0.5
    # Worker runs (stream/rules/runs.py): whether the visit partitions tell the run
    # partitions their facts, through ecm.runs; and the travel between visits a region is
    # assumed to take until it has learnt its own: a fixed overhead (to the car, parking,
    # to the door) plus the straight-line distance at this speed.
    runs: bool = False
    topic_runs: str = "ecm.runs"
    run_speed_m_s: float = 5.0
    run_overhead_s: float = 120.0
    # A deadline waits for its input partitions to be read past it (stream/rules/inputs.py),
    # but never longer than this (wall seconds): a late alert beats none.
    catchup_max_hold_s: float = 120.0
    # Largest message the worker writes (state deltas and work batches are split to fit):
    # below Kafka's default 1 MB limits with room for the record envelope.
    max_message_bytes: int = 900_000
    # The input contract's bounds (stream/contract/bounds.py): an input message larger than
    # this is rejected whole; it must leave room below max_message_bytes for a record's
    # envelope in ecm.work.
    max_input_bytes: int = 768 * 1024
    # Of any one string, array or object in a record decoded as an object, and how deeply
    # they nest; instants from the first day of earliest_year to the last of latest_year.
    max_string_bytes: int = 64 * 1024
    max_items: int = 10_000
    max_depth: int = 32
    earliest_year: int = 2000
    latest_year: int = 2100
    # Kafka compression of the ecm.state record batches (zstd, lz4, gzip or none): a state
    # delta is JSON, which zstd shrinks about ninefold, and the worker spent more on sending
    # the bytes than on compressing them. The other topics are written uncompressed, so
    # their consumers need no codec.
    state_compression: str = "zstd"
    # A partition writes all its state again once it has written this much to ecm.state
    # (or twice its last checkpoint) since its last checkpoint: bounds what a rebuild reads.
    checkpoint_min_bytes: int = 64 << 20
    # And once its last checkpoint began this long ago, whether or not it has written since:
    # the topics below drop records older than their retention, an idle partition's last
    # checkpoint included, unless a newer one is written first.
    checkpoint_max_age_s: float = 21600.0
    # retention.ms given to ecm.state and ecm.escalations by `ecm topics`; 0 keeps them.
    state_retention_s: float = 604800.0
    # How input and work messages reach the router and the detectors (stream/worker/lane.py):
    # "batch" hands each fetch's messages over as lists; "streams" runs Faust agents.
    input_lane: str = "batch"
    # Most messages handed over at once (the batch lane) or taken per take_events batch.
    batch_max: int = 500
    batch_within_s: float = 0.05
    # Longest a fetch may wait on the broker for data (stream/worker/faust_patches.py): bounds each
    # hop's delay on brokers that do not answer a fetch as soon as data arrives.
    fetch_max_wait_ms: int = 100
    # Consumer-group liveness: a crashed worker's partitions move after the session
    # timeout; Faust's default (60 s) is too slow for a safety monitor.
    session_timeout_s: float = 10.0
    # `ecm desk`, the duty desk's board: where it listens, and who may sign in. Tokens are
    # "user:token" pairs, comma separated, here or one a line in the file (stream/desk/auth.py).
    desk_port: int = 6070
    desk_host: str = "127.0.0.1"
    desk_tokens: str = field(default="", repr=False)
    desk_tokens_file: str = ""
    # Controlled recovery (missed-visit-recovery-escalation.txt): a named owner within 10
    # minutes of the escalation, a recovery pathway within 15; shorter for P1. The kinds
    # whose route asks for a recovery get the pathway deadline; the others an owner only.
    case_owner_sla_s: float = 600.0
    case_pathway_sla_s: float = 900.0
    case_owner_sla_p1_s: float = 300.0
    case_pathway_sla_p1_s: float = 600.0
    case_kinds: str = "missed,late,no_check_out"
    # Per contract, where the roster names one: JSON, {"<contract_id>": {"owner_s": 300,
    # "pathway_s": 600}}; either may be left out. They apply to every priority.
    case_contract_slas: str = ""
    # Visit records (stream/rules/visit_records.py): one per visit once it is settled, on
    # ecm.visits, for the management report (`ecm report`).
    visit_records: bool = True
    topic_visits: str = "ecm.visits"
    # Safeguarding on repeated failure (stream/rules/safeguarding.py): "Multiple missed or
    # late calls will be classed as a safeguarding issue" (the late and missed policy,
    # 5.11). A review is raised when a person has this many missed, or late, visits
    # within the window; per contract, JSON {"<contract_id>": {"missed": 1, "late": 2,
    # "window_s": 1209600}}, any left out taking the defaults.
    safeguarding_missed: int = 2
    safeguarding_late: int = 3
    safeguarding_window_s: float = 604800.0
    safeguarding_contracts: str = ""
    # `ecm report --pseudonymise` keys its hashes with this, so that pseudonyms stay the
    # same from one report to the next (unset: a random key per report). A secret.
    report_key: str = field(default="", repr=False)
    heartbeat_s: float = 1.0
    log_level: str = "info"
    # "text" (Faust's, coloured on a terminal) or "json": one object a line, for a shipper.
    log_format: str = "text"
    # Simulated time (stream/clock.py ScaledClock), for replaying a compressed day: when
    # clock_sim_start is set, "now" is clock_sim_start + (wall - clock_wall_start) * speed.
    clock_sim_start: float = 0.0
    clock_wall_start: float = 0.0
    clock_speed: float = 1.0

    def make_clock(self) -> Clock:
        if self.clock_sim_start:
            return ScaledClock(self.clock_sim_start, self.clock_wall_start, self.clock_speed)
        return SystemClock()

    def __post_init__(self) -> None:
        security.check(self)
        if self.partitions < 1:
            raise SettingsError("ECM_PARTITIONS must be at least 1")
        if not any(self.store.startswith(s) for s in _STORES):
            raise SettingsError(f"ECM_STORE must start with one of {_STORES}, not {self.store!r}")
        if self.log_level not in _LOG_LEVELS:
            raise SettingsError(f"ECM_LOG_LEVEL must be one of {_LOG_LEVELS}")
        if self.log_format not in _LOG_FORMATS:
            raise SettingsError(f"ECM_LOG_FORMAT must be one of {_LOG_FORMATS}")
        if self.input_lane not in _INPUT_LANES:
            raise SettingsError(f"ECM_INPUT_LANE must be one of {_INPUT_LANES}")
        if self.state_compression not in _COMPRESSIONS:
            raise SettingsError(f"ECM_STATE_COMPRESSION must be one of {_COMPRESSIONS}")
        if self.batch_max < 1:
            raise SettingsError("ECM_BATCH_MAX must be at least 1")
        for name in ("late_after_s", "missed_after_s", "short_long_after_s",
                     "no_checkout_after_s", "sweep_interval_s", "batch_within_s",
                     "checkpoint_max_age_s"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()} must be positive")
        for name in ("case_owner_sla_s", "case_pathway_sla_s", "case_owner_sla_p1_s",
                     "case_pathway_sla_p1_s"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()} must be positive")
        unknown = set(self.case_kind_set) - set(ESCALATION_KINDS)
        if unknown:
            raise SettingsError(f"ECM_CASE_KINDS names kinds that do not exist: "
                                f"{sorted(unknown)}; they are {ESCALATION_KINDS}")
        self.contract_slas  # noqa: B018 (checked once here, not at the first escalation)
        if min(self.safeguarding_missed, self.safeguarding_late) < 1:
            raise SettingsError("ECM_SAFEGUARDING_MISSED and ECM_SAFEGUARDING_LATE must be at "
                                "least 1")
        if self.safeguarding_window_s <= 0:
            raise SettingsError("ECM_SAFEGUARDING_WINDOW_S must be positive")
        self.safeguarding_thresholds  # noqa: B018 (checked once here)
        keep = self.state_retention_s
        if keep < 0 or 0 < keep < 2 * self.checkpoint_max_age_s:
            raise SettingsError("ECM_STATE_RETENTION_S must be 0 (keep for good) or at least "
                                "twice ECM_CHECKPOINT_MAX_AGE_S: a rebuild starts from the "
                                "last complete checkpoint")
        if self.max_input_bytes + (64 << 10) > self.max_message_bytes:
            raise SettingsError("ECM_MAX_INPUT_BYTES must leave 64 KiB below "
                                "ECM_MAX_MESSAGE_BYTES: an input record is forwarded whole")
        if min(self.max_string_bytes, self.max_items, self.max_depth) < 1:
            raise SettingsError("ECM_MAX_STRING_BYTES, ECM_MAX_ITEMS and ECM_MAX_DEPTH must be "
                                "at least 1")
        if not 1970 <= self.earliest_year <= self.latest_year <= 9000:
            raise SettingsError("ECM_EARLIEST_YEAR and ECM_LATEST_YEAR must be years from 1970 "
                                "to 9000, the earliest first")
        if self.missed_after_s < self.late_after_s:
            raise SettingsError("ECM_MISSED_AFTER_S must not be below ECM_LATE_AFTER_S")

    @property
    def input_topics(self) -> tuple[str, str, str]:
        """The topics the worker reads from producers: roster, events and actions."""
        return (self.topic_roster, self.topic_events, self.topic_actions)

    @property
    def case_kind_set(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.case_kinds.split(",") if k.strip())

    @property
    def contract_slas(self) -> dict[str, tuple[float | None, float | None]]:
        """ECM_CASE_CONTRACT_SLAS: per contract id, its owner and pathway deadlines (None
        where it names none)."""
        if not self.case_contract_slas.strip():
            return {}
        try:
            doc = json.loads(self.case_contract_slas)
        except ValueError as exc:
            raise SettingsError(f"ECM_CASE_CONTRACT_SLAS is not JSON: {exc}") from exc
        out: dict[str, tuple[float | None, float | None]] = {}
        if not isinstance(doc, dict):
            raise SettingsError("ECM_CASE_CONTRACT_SLAS must be a JSON object")
        for contract, slas in doc.items():
            if not isinstance(slas, dict) or set(slas) - {"owner_s", "pathway_s"}:
                raise SettingsError(f"ECM_CASE_CONTRACT_SLAS[{contract!r}] must be an object "
                                    "of owner_s and pathway_s")
            pair = tuple(slas.get(k) for k in ("owner_s", "pathway_s"))
            if any(v is not None and (isinstance(v, bool) or not isinstance(v, int | float)
                                      or v <= 0) for v in pair):
                raise SettingsError(f"ECM_CASE_CONTRACT_SLAS[{contract!r}]: deadlines are "
                                    "positive numbers of seconds")
            out[contract] = (None if pair[0] is None else float(pair[0]),
                             None if pair[1] is None else float(pair[1]))
        return out

    @property
    def safeguarding_thresholds(self) -> dict[str, tuple[int, int, float]]:
        """ECM_SAFEGUARDING_CONTRACTS: per contract id, its (missed, late, window_s)."""
        if not self.safeguarding_contracts.strip():
            return {}
        try:
            doc = json.loads(self.safeguarding_contracts)
        except ValueError as exc:
            raise SettingsError(f"ECM_SAFEGUARDING_CONTRACTS is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise SettingsError("ECM_SAFEGUARDING_CONTRACTS must be a JSON object")
        out: dict[str, tuple[int, int, float]] = {}
        for contract, t in doc.items():
            if not isinstance(t, dict) or set(t) - {"missed", "late", "window_s"}:
                raise SettingsError(f"ECM_SAFEGUARDING_CONTRACTS[{contract!r}] must be an "
                                    "object of missed, late and window_s")
            values = (t.get("missed", self.safeguarding_missed),
                      t.get("late", self.safeguarding_late),
                      t.get("window_s", self.safeguarding_window_s))
            if any(isinstance(v, bool) or not isinstance(v, int | float) or v < 1
                   for v in values) or any(not isinstance(v, int) for v in values[:2]):
                raise SettingsError(f"ECM_SAFEGUARDING_CONTRACTS[{contract!r}]: counts are "
                                    "whole numbers of at least 1, window_s seconds")
            out[contract] = (int(values[0]), int(values[1]), float(values[2]))
        return out

    @property
    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in self.broker.split(",") if s.strip()]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from ``ECM_*`` variables, then apply explicit overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _coerce(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_env(self) -> dict[str, str]:
        """The environment that rebuilds these settings in a child process."""
        return {PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}


def _coerce(name: str, type_name: object, raw: str) -> object:
    if type_name in ("bool", bool):
        flag = raw.strip().lower()
        if flag in ("1", "true", "yes", "on"):
            return True
        if flag in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{PREFIX}{name.upper()}={raw!r} is not true or false")
    try:
        if type_name in ("int", int):
            return int(raw)
        if type_name in ("float", float):
            return float(raw)
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}{name.upper()}={raw!r} is not a number") from exc
    return raw
