"""What the workers' logs say after a kill: their tails, and their errors with the kill each
follows, for an assertion message or a benchmark's record.

A worker logs through Faust's format, ``[YYYY-MM-DD HH:MM:SS,mmm] [pid] [LEVEL] message``,
its instant on the host's local time (``logging`` uses ``time.localtime``): it is read back
with the same convention, to epoch seconds, and compared with the rotation's wall instants.
"""

from __future__ import annotations

import bisect
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\] \[\d+\] \[(\w+)\] (.*)$")
_SERIOUS = ("ERROR", "CRITICAL")
_STOPPED = "[^Worker]: Signal received: 15"


@dataclass(frozen=True)
class LogError:
    worker: str
    at: float  # wall, epoch seconds
    level: str
    text: str


def tails(paths: Iterable[Path], chars: int = 2500) -> str:
    """The last ``chars`` of each log before the orderly stop that ends every run (its
    SIGTERM and Faust's shutdown say nothing about the run), under its name."""
    out = []
    for p in sorted(paths):
        text = p.read_text(errors="replace") if p.exists() else ""
        stop = text.rfind(_STOPPED)
        if stop >= 0:
            text = text[:text.rfind("\n", 0, stop) + 1]
        out.append(f"----- {p.name} (last {min(chars, len(text))} of {len(text)} chars "
                   f"before its stop)\n{text[-chars:]}")
    return "\n".join(out)


def errors(paths: Iterable[Path]) -> list[LogError]:
    """Every ERROR and CRITICAL line of the logs, and every traceback's last line (the
    exception) under the line it follows, in time order."""
    found: list[LogError] = []
    for p in paths:
        if not p.exists():
            continue
        last_at = 0.0
        in_traceback = False
        for line in p.read_text(errors="replace").splitlines():
            m = _LINE.match(line)
            if m:
                in_traceback = False
                last_at = time.mktime(time.strptime(m[1], "%Y-%m-%d %H:%M:%S")) + int(m[2]) / 1e3
                if m[3] in _SERIOUS:
                    found.append(LogError(p.stem, last_at, m[3], m[4][:300]))
            elif line.startswith("Traceback"):
                in_traceback = True
            elif in_traceback and line and not line[0].isspace():
                found.append(LogError(p.stem, last_at, "TRACEBACK", line[:300]))
                in_traceback = False
    return sorted(found, key=lambda e: e.at)


def following(errs: Sequence[LogError], kills: Sequence[float]) -> list[dict[str, object]]:
    """The errors with the kill each follows (its index, and the seconds from it to the
    first of them), one entry per worker, message (numbers aside) and kill: ``kills`` are
    the rotation's wall instants, in order."""
    first: dict[tuple[str, str, int | None], LogError] = {}
    count: Counter[tuple[str, str, int | None]] = Counter()
    for e in errs:
        k = bisect.bisect_right(kills, e.at) - 1
        key = (e.worker, _shape(e.text), k if k >= 0 else None)
        first.setdefault(key, e)
        count[key] += 1
    return [{"worker": e.worker, "level": e.level, "text": e.text, "count": count[key],
             "after_kill": key[2],
             "seconds_after_kill": None if key[2] is None else round(e.at - kills[key[2]], 1)}
            for key, e in first.items()]


def _shape(text: str) -> str:
    """A message with its numbers taken out: the same error at other offsets is one."""
    return re.sub(r"\d+", "#", text)[:160]
