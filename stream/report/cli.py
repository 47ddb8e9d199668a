"""``ecm report --from DAY --to DAY``: the management report, written to ``--out``
(``report/``): report.html, a CSV file per table, and report.duckdb for further questions.

It prints one line per file written and the totals (``--json``: the totals as one JSON
line). It prints counts and paths only, never an id: what it prints may end up in a log.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from stream.report import ReportError
from stream.settings import Settings

if TYPE_CHECKING:
    import duckdb

    from stream.report.page import About
    from stream.report.read import Staged
    from stream.report.tables import Table


def add_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="the management report on late and missed visits, "
                                      "from ecm.visits")
    p.add_argument("--from", dest="first", required=True, type=date.fromisoformat,
                   metavar="YYYY-MM-DD", help="the first day (UTC) of scheduled starts")
    p.add_argument("--to", dest="last", required=True, type=date.fromisoformat,
                   metavar="YYYY-MM-DD", help="the last day (UTC), included")
    p.add_argument("--out", type=Path, default=Path("report"), help="default report/")
    p.add_argument("--pseudonymise", action="store_true",
                   help="worker, client and visit ids as keyed pseudonyms (key: "
                        "ECM_REPORT_KEY, else a random key for this run)")
    p.add_argument("--broker")
    p.add_argument("--input", type=Path, help="JSON lines of visit records, instead of Kafka")
    p.add_argument("--escalations", type=Path,
                   help="with --input: JSON lines of escalations (the safeguarding reviews)")
    p.add_argument("--json", action="store_true", help="the totals as one JSON line")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream.report import load, page, tables
    from stream.report.pseudonym import Pseudonyms

    refused = _refused(args, settings)
    pseudonyms = Pseudonyms(_key(settings)) if args.pseudonymise else None
    con = load.connect(pseudonyms)
    try:
        if refused:
            raise ReportError(refused)
        staged, source = _load(con, args, settings)
    except (ReportError, OSError) as exc:
        con.close()
        print(f"no report: {exc}")
        return 2
    found = tables.compute(con, args.first, args.last)
    about = page.About(args.first, args.last, datetime.now(UTC), source,
                       pseudonyms is not None, staged.read, staged.rejected)
    written = _write(con, args.out, found, about)
    con.close()

    for path in written:
        print(f"wrote {path}")
    if pseudonyms is not None and pseudonyms.random_key:
        print("pseudonyms keyed for this report only: set ECM_REPORT_KEY to keep them "
              "from one report to the next")
    if staged.rejected:
        print(f"skipped {staged.rejected} of {staged.read} records: not readable as "
              "visit records or escalations")
    totals = found["totals"].as_dict()
    print(orjson.dumps(totals).decode() if args.json else _describe(totals))
    return 0


def _refused(args: argparse.Namespace, settings: Settings) -> str | None:
    if args.last < args.first:
        return "--to is before --from"
    if args.escalations and not args.input:
        return ("--escalations goes with --input (from Kafka, the escalations are read from "
                f"{settings.topic_escalations})")
    return None


def _load(con: duckdb.DuckDBPyConnection, args: argparse.Namespace, settings: Settings
          ) -> tuple[Staged, str]:
    """The records read into ``con``'s tables; and where they came from, for the page."""
    from stream.report import load, read

    # The staged records name people: in a directory of their own, gone once loaded.
    with tempfile.TemporaryDirectory(prefix="ecm-report-") as tmp:
        staging = Path(tmp) / "visits.jsonl"
        with staging.open("wb") as f:
            staged = read.Staged(f, args.first, args.last)
            if args.input:
                read.from_files(staged, args.input, args.escalations)
                source = "files"
            else:
                read.from_kafka(staged, settings)
                source = f"{read.topic_visits(settings)} and {settings.topic_escalations}"
        load.load(con, staging, staged, args.first, args.last)
    return staged, source


def _write(con: duckdb.DuckDBPyConnection, out: Path, found: dict[str, Table],
           about: About) -> list[Path]:
    from stream.report import load, page, tables

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.html"]
    written[0].write_text(page.render(found, about), encoding="utf-8")
    for name in tables.CSV:
        written.append(out / f"{name}.csv")
        tables.write_csv(found[name], written[-1], by_measure=name == "totals")
    written.append(out / "report.duckdb")
    load.save(con, written[-1])
    return written


def _key(settings: Settings) -> bytes | None:
    return settings.report_key.encode("utf-8") or None


def _describe(n: dict[str, Any]) -> str:
    return (f"planned {n['planned']}, attended {n['attended']}, late {n['late']}, "
            f"missed {n['missed']} ({100 * n['missed_proportion']:.1f}% of planned), "
            f"cancelled {n['cancelled']}; service-side disruption yes {n['disruption_yes']}, "
            f"no {n['disruption_no']}, unknown {n['disruption_unknown']}; safeguarding "
            f"reviews {n['safeguarding_reviews']}")
