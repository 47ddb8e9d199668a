"""The report as one self-contained HTML page: its style inline, its charts inline SVG, no
script and no URL, so it reads the same offline, attached to an email or printed.

The headings quote the late and missed policy (/work/shared/seeds, sections 5.5 to 5.11)
where the policy asks for what the section shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from html import escape
from typing import Any

from stream.report import charts
from stream.report.tables import WORST, Table


@dataclass(frozen=True)
class About:
    first: date
    last: date
    made_at: datetime
    source: str
    pseudonymised: bool
    read: int
    rejected: int


_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1em 1.5em;
color:#1b1b1b}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:2em;border-bottom:2px solid #ddd}
blockquote{margin:.4em 0 1em;padding:.2em .9em;border-left:4px solid #0072b2;color:#444}
.note{background:#fff6e0;border:1px solid #e69f00;padding:.6em .9em;border-radius:4px}
.cards{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.card{border:1px solid #ccc;border-radius:6px;padding:.5em 1em;min-width:8em}
.card b{display:block;font-size:1.8em}
table{border-collapse:collapse;margin:.6em 0 1.2em}
th,td{border-bottom:1px solid #ddd;padding:.25em .7em;text-align:left;white-space:nowrap}
th{background:#f4f4f4}td.n{text-align:right}
td.list{white-space:normal}td.list span{white-space:nowrap}
figure{margin:.5em 0}figure svg{width:100%;height:auto}
figcaption{font-weight:600}
footer{margin-top:3em;color:#555;font-size:.9em}
"""


def render(t: dict[str, Table], about: About) -> str:
    parts = [_head(about), _totals(t["totals"].as_dict()), _over_time(t), _indexes(t),
             _recovery(t), _safeguarding(t), _foot(about)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Late and missed visits, {about.first} to {about.last}</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def _head(about: About) -> str:
    ids = ("Workers, service users, visits and reviews appear as keyed pseudonyms (w-, c-, "
           "v-, e-): the same id has the same pseudonym throughout this report."
           if about.pseudonymised
           else "Workers, service users and visits appear by their ids.")
    return (f"<h1>Late and missed visits</h1><p>Visits scheduled to start from {about.first} "
            f"to {about.last} (UTC days), as the monitor recorded them. {ids}</p>"
            "<p class=\"note\" id=\"suggestions\"><b>Suggestions, not decisions.</b> The causes, "
            "the service-side disruption and the classifications are suggested by the monitor "
            "from the evidence it holds; people decide, in the case system.</p>")


def _totals(n: dict[str, Any]) -> str:
    cards = "".join(
        f"<div class=\"card\" id=\"total-{key}\"><b>{value}</b>{escape(label)}</div>"
        for key, value, label in (
            ("planned", n["planned"], "planned visits"), ("attended", n["attended"], "attended"),
            ("late", n["late"], "late"), ("missed", n["missed"], "missed"),
            ("cancelled", n["cancelled"], "cancelled"),
            ("missed-proportion", _percent(n["missed_proportion"]),
             "of planned visits missed")))
    disruption = Table(("service-side disruption", "visits"), [
        (k, n[f"disruption_{k}"]) for k in ("yes", "no", "unknown")])
    suggested = Table(("suggested classification", "visits"), [
        (k.replace("_", " "), n[f"suggested_{k}"]) for k in (
            "service_failure", "access_barrier_possible", "person_declined", "needs_review")])
    other = Table(("also", "visits"), [
        ("cancelled after their late or missed deadline (counted as planned)",
         n["cancelled_after_deadline"]),
        ("extended by 15 minutes or more (6.1)", n["extended"]),
        ("short-staffed", n["short_staffed"]),
        ("a substitute care worker came", n["with_substitute"])])
    return ("<h2 id=\"totals\">Totals</h2><blockquote>\u201cService Users receive their booked "
            "visits\u201d (5.2). The proportion of planned visits missed is NICE QS123\u2019s "
            "measure; a planned visit is one not cancelled before its deadlines.</blockquote>"
            f"<div class=\"cards\">{cards}</div>" + _table(disruption, "disruption")
            + _table(suggested, "classifications") + _table(other, "other"))


def _over_time(t: dict[str, Table]) -> str:
    out = ["<h2 id=\"over-time\">Late and missed visits over time</h2><blockquote>\u201cAudit "
           "the number of missed or late visits (and the reasons for these) occurring over a "
           "minimum period of four weeks\u201d (5.9).</blockquote>"]
    for name, key, width, caption in (("per_day", "day", 1, "Per day"),
                                      ("per_week", "week", 7, "Per week (from Monday)")):
        table = t[name]
        chart = charts.dated_bars(name, table.column(key), {
            "late": (charts.LATE, table.column("late")),
            "missed": (charts.MISSED, table.column("missed"))}, width, "visits")
        out.append(_figure(name, caption, chart) + _table(table, name))
    return "".join(out)


def _indexes(t: dict[str, Table]) -> str:
    return (
        "<h2 id=\"indexes\">Indexed for the management meeting</h2><blockquote>\u201cThe "
        "records of late visits will be reported to each Management Meeting, indexed on each "
        "of: reason for delay, Care Worker initially allocated, Service Users\u201d (5.6; "
        f"and for missed visits, 5.10). The worst {WORST} of each, "
        "by late and missed visits.</blockquote>"
        "<h3>By reason</h3><p>The cause the visit's late or missed escalation states; "
        "\u201cunknown\u201d when the evidence showed none.</p>"
        + _table(t["by_reason"], "by_reason")
        + "<h3>By care worker initially allocated</h3><p>The first rostered worker; "
          "\u201csubstitute came\u201d: of those visits, how many a worker not on the roster "
          "attended.</p>" + _table(t["by_worker"], "by_worker")
        + "<h3>By service user</h3>" + _table(t["by_client"], "by_client"))


def _recovery(t: dict[str, Table]) -> str:
    bins = t["recovery_bins"]
    chart = charts.bars("recovery_bins", bins.column("recovery"), bins.column("cases"),
                        "cases closed")
    return ("<h2 id=\"recovery\">Recovery</h2><blockquote>\u201cEndeavour to source a "
            "replacement Care Worker and notify the Service Users of the delay\u201d (5.7). "
            "From each late or missed visit's case opening to its closure by the duty desk."
            "</blockquote>" + _table(t["recovery"], "recovery")
            + _figure("recovery_bins", "Time to close the case", chart)
            + _table(bins, "recovery_bins"))


def _safeguarding(t: dict[str, Table]) -> str:
    per_day = t["safeguarding_per_day"]
    chart = charts.dated_bars("safeguarding_per_day", per_day.column("day"), {
        "reviews": (charts.REVIEWS, per_day.column("reviews"))}, 1, "reviews")
    count = len(t["safeguarding"].rows)
    return ("<h2 id=\"safeguarding\">Safeguarding reviews</h2><blockquote>\u201cMultiple "
            "missed or late calls will be classed as a safeguarding issue\u201d (5.11). "
            "Raised by the monitor for people to review.</blockquote>"
            f"<p id=\"safeguarding-count\"><b>{count}</b> raised.</p>"
            + _figure("safeguarding_per_day", "Raised per day", chart)
            + _table(t["safeguarding"], "safeguarding"))


def _foot(about: About) -> str:
    made = about.made_at.strftime("%Y-%m-%d %H:%M UTC")
    return (f"<footer>Made {made} by <code>ecm report</code> from {escape(about.source)}: "
            f"{about.read} records read, {about.rejected} skipped as unreadable. Each visit's "
            "record (5.5, 5.8) is in <code>report.duckdb</code>, table <code>visits</code>."
            "</footer>")


def _figure(name: str, caption: str, svg: str) -> str:
    return (f"<figure id=\"chart-{name}\"><figcaption id=\"{name}-title\">{escape(caption)}"
            f"</figcaption>{svg}</figure>")


def _table(table: Table, name: str) -> str:
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(_td(c, v) for c, v in zip(table.columns, row, strict=True))
                   + "</tr>" for row in table.rows)
    if not table.rows:
        body = f"<tr><td colspan=\"{len(table.columns)}\">none</td></tr>"
    return f"<table id=\"table-{name}\"><tr>{head}</tr>{body}</table>"


def _td(column: str, value: Any) -> str:
    """A cell: numbers right-aligned, so that their digits line up; lists may wrap."""
    kind = ""
    if value is None:
        text = ""
    elif column.endswith("_proportion"):
        kind, text = " class=\"n\"", _percent(value)
    elif isinstance(value, int | float):
        kind, text = " class=\"n\"", str(value)
    elif column == "visits":  # ids, each kept whole on its line
        return "<td class=\"list\">" + " ".join(
            f"<span>{escape(v)}</span>" for v in str(value).split()) + "</td>"
    else:
        text = str(value)
    return f"<td{kind}>{escape(text)}</td>"


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"
