"""The report's tables, each one SQL query over ``visits`` and ``safeguarding`` (load.py).

The counts follow the visits' timeliness (visit.schema.json): on time, late (by the missed
threshold), missed (after it, or never: the late and missed policy, 5.1), cancelled (before
either deadline fell). A visit cancelled only after its deadline had fallen is still a
planned visit, late or missed: cancelling a failed visit does not undo the failure. The
proportion of planned visits missed is NICE QS123's measure.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

# The worst of each index: "indexed on each of" (the policy, 5.6) for a meeting to read.
WORST = 10

_COUNTS = """
    count(*) FILTER (timeliness <> 'cancelled') AS planned,
    count(*) FILTER (timeliness = 'late') AS late,
    count(*) FILTER (timeliness = 'missed') AS missed"""

_TOTALS = f"""
SELECT count(*) AS visits, {_COUNTS},
    count(*) FILTER (outcome IN ('attended', 'attended_no_check_out')) AS attended,
    count(*) FILTER (timeliness = 'on_time') AS on_time,
    count(*) FILTER (timeliness = 'cancelled') AS cancelled,
    count(*) FILTER (outcome = 'cancelled' AND timeliness <> 'cancelled')
        AS cancelled_after_deadline,
    coalesce(round(missed / nullif(planned, 0), 4), 0) AS missed_proportion,
    count(*) FILTER (service_side_disruption = 'yes') AS disruption_yes,
    count(*) FILTER (service_side_disruption = 'no') AS disruption_no,
    count(*) FILTER (service_side_disruption = 'unknown') AS disruption_unknown,
    count(*) FILTER (suggested_classification = 'service_failure') AS suggested_service_failure,
    count(*) FILTER (suggested_classification = 'access_barrier_possible')
        AS suggested_access_barrier_possible,
    count(*) FILTER (suggested_classification = 'person_declined') AS suggested_person_declined,
    count(*) FILTER (suggested_classification = 'needs_review') AS suggested_needs_review,
    count(*) FILTER (extended) AS extended,
    count(*) FILTER (short_staffed AND timeliness <> 'cancelled') AS short_staffed,
    count(*) FILTER (substitute) AS with_substitute,
    (SELECT count(*) FROM safeguarding) AS safeguarding_reviews
FROM visits
"""

_PER_DAY = f"""
SELECT d.day, {_COUNTS},
    count(*) FILTER (timeliness = 'cancelled') AS cancelled,
    round(missed / nullif(planned, 0), 4) AS missed_proportion
FROM (SELECT CAST(g AS DATE) AS day
      FROM generate_series($first::DATE, $last::DATE, INTERVAL 1 DAY) AS t(g)) AS d
LEFT JOIN visits AS v ON v.day = d.day
GROUP BY d.day ORDER BY d.day
"""

_PER_WEEK = f"""
SELECT w.week, {_COUNTS},
    count(*) FILTER (timeliness = 'cancelled') AS cancelled,
    round(missed / nullif(planned, 0), 4) AS missed_proportion
FROM (SELECT CAST(g AS DATE) AS week
      FROM generate_series(CAST(date_trunc('week', $first::DATE) AS DATE), $last::DATE,
                           INTERVAL 7 DAY) AS t(g)) AS w
LEFT JOIN visits AS v ON v.week = w.week
GROUP BY w.week ORDER BY w.week
"""


def _worst(key: str, label: str, extra: str = "", join: str = "") -> str:
    """The ``WORST`` keys with the most late and missed visits, the most first."""
    return f"""
SELECT coalesce({key}, '(none)') AS {label}, {_COUNTS},
    late + missed AS late_and_missed{extra}
FROM visits {join}
GROUP BY 1 HAVING late + missed > 0
ORDER BY late_and_missed DESC, missed DESC, {label}
LIMIT {WORST}
"""


# A cause is stated on late and missed visits only: no count of planned visits.
_BY_REASON = f"""
SELECT coalesce(cause, '(none stated)') AS reason,
    count(*) FILTER (timeliness = 'late') AS late,
    count(*) FILTER (timeliness = 'missed') AS missed,
    late + missed AS late_and_missed
FROM visits WHERE timeliness IN ('late', 'missed')
GROUP BY 1
ORDER BY late_and_missed DESC, missed DESC, reason
LIMIT {WORST}
"""
_BY_WORKER = _worst("rostered_worker", "rostered_worker",
                    ", count(*) FILTER (substitute) AS substitute_came")
_BY_CLIENT = _worst("client_id", "client_id",
                    ", coalesce(any_value(s.reviews), 0) AS safeguarding_reviews",
                    "LEFT JOIN (SELECT client_id, count(*) AS reviews FROM safeguarding "
                    "GROUP BY client_id) AS s USING (client_id)")

# The failed visits' cases, from their late or missed escalation opening to its closure.
_RECOVERY = """
SELECT coalesce(timeliness, 'late and missed') AS failed, count(*) AS visits,
    count(recovery_s) AS cases_closed,
    count(*) FILTER (case_kind IS NOT NULL AND recovery_s IS NULL) AS cases_not_closed,
    count(*) FILTER (case_kind IS NULL) AS without_case,
    round(quantile_cont(recovery_s, 0.5) / 60, 1) AS p50_min,
    round(quantile_cont(recovery_s, 0.9) / 60, 1) AS p90_min,
    round(max(recovery_s) / 60, 1) AS max_min
FROM visits WHERE timeliness IN ('late', 'missed')
GROUP BY GROUPING SETS ((timeliness), ())
ORDER BY grouping(timeliness), timeliness
"""

# Bins a duty manager reads: within a quarter hour, a half hour, an hour, and so on.
_RECOVERY_BINS = """
SELECT b.bin AS recovery, count(v.recovery_s) AS cases
FROM (VALUES (0, 'under 15 min', 0, 900), (1, '15-30 min', 900, 1800),
             (2, '30-60 min', 1800, 3600), (3, '1-2 h', 3600, 7200), (4, '2-4 h', 7200, 14400),
             (5, '4-8 h', 14400, 28800), (6, '8 h or more', 28800, 'infinity'::DOUBLE))
     AS b(i, bin, lo, hi)
LEFT JOIN visits AS v ON v.recovery_s >= b.lo AND v.recovery_s < b.hi
GROUP BY b.i, b.bin ORDER BY b.i
"""

_SAFEGUARDING = """
SELECT strftime(detected_at, '%Y-%m-%d %H:%M') AS raised, review_id, client_id, priority,
    status, missed, late, array_to_string(visits, ' ') AS visits
FROM safeguarding ORDER BY detected_at, review_id
"""

_SAFEGUARDING_PER_DAY = """
SELECT d.day, count(s.review_id) AS reviews
FROM (SELECT CAST(g AS DATE) AS day
      FROM generate_series($first::DATE, $last::DATE, INTERVAL 1 DAY) AS t(g)) AS d
LEFT JOIN safeguarding AS s ON s.day = d.day
GROUP BY d.day ORDER BY d.day
"""

QUERIES = {"totals": _TOTALS, "per_day": _PER_DAY, "per_week": _PER_WEEK,
           "by_reason": _BY_REASON, "by_worker": _BY_WORKER, "by_client": _BY_CLIENT,
           "recovery": _RECOVERY, "recovery_bins": _RECOVERY_BINS,
           "safeguarding": _SAFEGUARDING, "safeguarding_per_day": _SAFEGUARDING_PER_DAY}
# The tables written as CSV files too; the others are the charts' data.
CSV = ("totals", "per_day", "per_week", "by_reason", "by_worker", "by_client", "recovery",
       "safeguarding")


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def as_dict(self) -> dict[str, Any]:
        """The first row by column: the totals."""
        return dict(zip(self.columns, self.rows[0], strict=True))


def compute(con: duckdb.DuckDBPyConnection, first: date, last: date) -> dict[str, Table]:
    out = {}
    for name, sql in QUERIES.items():
        params = {k: v for k, v in (("first", first), ("last", last)) if f"${k}" in sql}
        cursor = con.execute(sql, params)
        out[name] = Table(tuple(d[0] for d in cursor.description), cursor.fetchall())
    return out


def write_csv(table: Table, path: Path, *, by_measure: bool = False) -> None:
    """The table as CSV; ``by_measure``, its one row as measure,value lines (the totals:
    one figure a line reads and diffs better than a row of twenty columns)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        if by_measure:
            out.writerow(("measure", "value"))
            out.writerows(table.as_dict().items())
        else:
            out.writerow(table.columns)
            out.writerows(table.rows)
