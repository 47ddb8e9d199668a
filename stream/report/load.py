"""The records that stand, as DuckDB tables: ``visits``, one row a visit scheduled to start
within the report's days (UTC), and ``safeguarding``, one row a review raised within them.

The staged records (read.py) are read with the contract's types
(stream/contract/schemas/visit.schema.json); the last of each visit is kept, and flattened,
in SQL. A field of the wrong type reads as null, as unknown. When the report is
pseudonymised, every worker, client and visit id is replaced here, as the tables are built,
so nothing downstream (the CSVs, the page, the saved database) ever holds the original.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import duckdb

from stream.report.read import Staged

_INSTANT = "TIMESTAMPTZ"
_VISIT_COLUMNS = {
    "visit_id": "VARCHAR", "client_id": "VARCHAR", "contract_id": "VARCHAR",
    "settled_at": _INSTANT, "outcome": "VARCHAR", "timeliness": "VARCHAR",
    "scheduled_start": _INSTANT, "scheduled_end": _INSTANT, "scheduled_duration_s": "DOUBLE",
    "rostered_worker_ids": "VARCHAR[]",
    "roster_changes": 'STRUCT("change" VARCHAR, before_start_s DOUBLE, late BOOLEAN)[]',
    "workers": "STRUCT(worker_id VARCHAR, role VARCHAR)[]",
    "short_staffed": "BOOLEAN", "arrived_at": _INSTANT, "delayed_s": "DOUBLE",
    "actual_duration_s": "DOUBLE", "extended": "BOOLEAN", "location": "VARCHAR",
    "escalations": f"STRUCT(kind VARCHAR, priority VARCHAR, status VARCHAR, level INTEGER, "
                   f"detected_at {_INSTANT}, final_outcome_code VARCHAR, "
                   f"closed_at {_INSTANT})[]",
    "cause": "VARCHAR", "contactability": "VARCHAR",
    "classification": "STRUCT(service_side_disruption VARCHAR, "
                      "disruption_evidence VARCHAR[], suggested_classification VARCHAR)",
}
_REVIEW_COLUMNS = {
    "escalation_id": "VARCHAR", "client_id": "VARCHAR", "contract_id": "VARCHAR",
    "status": "VARCHAR", "priority": "VARCHAR", "level": "INTEGER", "detected_at": _INSTANT,
    "evidence": "STRUCT(visits VARCHAR[], missed INTEGER, late INTEGER)",
}

# The visit's failure case: the late or missed escalation its timeliness names, else the
# other of the two (a visit late past its missed threshold may have had only its late
# raised before it was attended).
_VISITS = """
CREATE TABLE visits AS
WITH v AS (
    SELECT *, CAST(scheduled_start AS DATE) AS day,
           CASE WHEN timeliness IN ('late', 'missed') THEN coalesce(
               list_filter(escalations, lambda e: e.kind = timeliness)[1],
               list_filter(escalations, lambda e: e.kind IN ('late', 'missed'))[1]) END AS fc,
           list_filter(workers, lambda w: w.role = 'substitute') AS substitutes
    FROM staged_visits)
SELECT pid('visit', visit_id) AS visit_id, pid('client', client_id) AS client_id, contract_id,
       scheduled_start, scheduled_end, day, CAST(date_trunc('week', day) AS DATE) AS week,
       settled_at, outcome, timeliness, delayed_s, scheduled_duration_s, actual_duration_s,
       extended, location, cause, contactability,
       classification.service_side_disruption AS service_side_disruption,
       array_to_string(classification.disruption_evidence, ',') AS disruption_evidence,
       classification.suggested_classification AS suggested_classification,
       pid('worker', rostered_worker_ids[1]) AS rostered_worker,
       len(rostered_worker_ids) AS rostered_workers,
       len(substitutes) > 0 AS substitute,
       pid('worker', substitutes[1].worker_id) AS substitute_worker,
       short_staffed,
       coalesce(list_bool_or(list_transform(roster_changes, lambda c: c.late)), false)
           AS late_roster_change,
       fc.kind AS case_kind, fc.priority AS case_priority, fc.status AS case_status,
       fc.final_outcome_code AS case_outcome, fc.detected_at AS case_detected_at,
       fc.closed_at AS case_closed_at,
       epoch(fc.closed_at) - epoch(fc.detected_at) AS recovery_s
FROM v
"""

_SAFEGUARDING = """
CREATE TABLE safeguarding AS
SELECT pid('review', escalation_id) AS review_id, pid('client', client_id) AS client_id,
       contract_id, detected_at, CAST(detected_at AS DATE) AS day, priority, status, level,
       evidence.missed AS missed, evidence.late AS late,
       list_transform(coalesce(evidence.visits, []), lambda x: pid('visit', x)) AS visits
FROM staged_reviews
WHERE CAST(detected_at AS DATE) BETWEEN $first AND $last
"""


def connect(pseudonym: Callable[[str, str], str] | None) -> duckdb.DuckDBPyConnection:
    """An in-memory database whose ``pid(kind, id)`` is the pseudonym, or the id itself."""
    con = duckdb.connect()
    # Days and weeks are UTC days, whatever the zone of the machine making the report.
    con.execute("SET TimeZone = 'UTC'")
    if pseudonym is None:
        con.execute("CREATE MACRO pid(kind, x) AS x")
    else:
        con.create_function("pid", pseudonym, ["VARCHAR", "VARCHAR"], "VARCHAR")
    return con


def load(con: duckdb.DuckDBPyConnection, visits: Path, staged: Staged, first: date,
         last: date) -> None:
    """``visits`` is the staging file ``staged`` wrote."""
    con.execute(f"""
        CREATE TEMP TABLE staged_visits AS SELECT doc.* FROM (
            SELECT * FROM {_reader(_VISIT_COLUMNS, wrapped=True)}
            QUALIFY row_number() OVER (PARTITION BY coalesce(gone, doc.visit_id)
                                       ORDER BY seq DESC) = 1)
        WHERE gone IS NULL""", [str(visits)])
    reviews = visits.with_name("reviews.jsonl")
    reviews.write_bytes(b"".join(raw + b"\n" for _, raw in staged.reviews.values()))
    con.execute(f"CREATE TEMP TABLE staged_reviews AS SELECT * FROM "
                f"{_reader(_REVIEW_COLUMNS)}", [str(reviews)])
    con.execute(_VISITS)
    con.execute(_SAFEGUARDING, {"first": first, "last": last})
    # The staged records hold the original ids: gone before anything is written out.
    con.execute("DROP TABLE staged_visits")
    con.execute("DROP TABLE staged_reviews")


def _reader(columns: dict[str, str], *, wrapped: bool = False) -> str:
    if wrapped:  # {"seq": n, "doc": record}, or {"seq": n, "gone": visit_id}
        record = ", ".join(f'"{name}" {kind}' for name, kind in columns.items())
        columns = {"seq": "BIGINT", "gone": "VARCHAR", "doc": f"STRUCT({record})"}
    spec = ", ".join(f"{name}: '{kind}'" for name, kind in columns.items())
    return (f"read_json(?, format = 'newline_delimited', ignore_errors = true, "
            f"columns = {{{spec}}})")


def save(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """The tables in a database file a planner can query again (``duckdb report.duckdb``)."""
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    con.execute("ATTACH ? AS saved", [str(path)])
    try:
        for table in ("visits", "safeguarding"):
            con.execute(f"CREATE TABLE saved.{table} AS SELECT * FROM {table}")
    finally:
        con.execute("DETACH saved")
