"""The report's charts: matplotlib figures (never pyplot, so no GUI backend and no global
state) saved as SVG and inlined in the page, so it needs no network when it is read.

Text stays text (``svg.fonttype: none``): the page is searchable and small. Each chart's
element ids are prefixed with its name, so that several charts can share one page.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from datetime import date

import matplotlib
import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# Okabe and Ito's palette: told apart by readers with any common colour-vision deficiency.
LATE, MISSED, REVIEWS, CASES = "#e69f00", "#d55e00", "#0072b2", "#009e73"
_SIZE_IN = (9.0, 3.0)


def dated_bars(name: str, days: Sequence[date], series: dict[str, tuple[str, Sequence[int]]],
               width_days: float, label: str) -> str:
    """Stacked bars per day or week: ``series`` maps a legend label to (colour, counts)."""
    fig = Figure(figsize=_SIZE_IN, layout="constrained")
    ax = fig.subplots()
    base = [0] * len(days)
    for legend, (colour, counts) in series.items():
        ax.bar(days, counts, width=width_days * 0.8, bottom=base, color=colour, label=legend)
        base = [b + c for b, c in zip(base, counts, strict=True)]
    if width_days >= 7:  # a tick on each week's Monday
        ax.set_xticks(list(days), [f"{d:%d %b}" for d in days])
    else:
        locator = mdates.AutoDateLocator(maxticks=12)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    _finish(ax, label, legend=len(series) > 1)
    return _svg(fig, name)


def bars(name: str, labels: Sequence[str], counts: Sequence[int], label: str) -> str:
    fig = Figure(figsize=_SIZE_IN, layout="constrained")
    ax = fig.subplots()
    ax.bar(list(labels), counts, color=CASES)
    _finish(ax, label, legend=False)
    return _svg(fig, name)


def _finish(ax: Axes, label: str, *, legend: bool) -> None:
    ax.set_ylabel(label)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    if legend:
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _svg(fig: Figure, name: str) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": name}):
        fig.savefig(buf, format="svg",
                    metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buf.getvalue()
    # Inline SVG needs neither the XML prologue nor the namespace declarations (the HTML
    # parser supplies them): the page then holds no URL at all.
    text = text[text.index("<svg"):]
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text, count=2)
    text = re.sub(r'(\bid="|url\(#|href="#)', rf"\g<1>{name}-", text)
    return text.replace("<svg", f'<svg role="img" aria-labelledby="{name}-title"', 1)
