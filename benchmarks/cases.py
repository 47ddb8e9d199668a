"""What a case costs, in process: ``python -m benchmarks.cases``.

One partition's detector tracks ``--visits`` visits; a storm of check-ins 2 km from their
visits raises one location_mismatch each, and so one case each. Measured side by side:

* **time** (CPU): the storm's check-ins per second through process() and the records'
  encoding, with cases and without (every escalation sharing one empty case, no timer: the
  detector as it was before cases), the best of two runs each, alternating;
* **memory** (tracemalloc, after a collection): what the storm leaves allocated per
  escalation, with and without cases: the difference is an open case (its struct, its
  deadlines, its timer); then what an acknowledgement adds to a case (its owner and the
  history entry), and the sweep of the acknowledged cases' owner deadlines.

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc

import msgspec

from benchmarks import workload as wl
from benchmarks.pipeline import machine
from geofence.fences import warm_up
from stream.clock import ManualClock
from stream.contract import Codec, Source
from stream.rules.detector import PartitionDetector
from stream.settings import Settings
from stream.timeutil import format_instant

NOW = 1_800_000_000.0
_encode = msgspec.json.Encoder().encode


def _feed(d: PartitionDetector, docs: list[dict], kind: str, topic: str, per: int) -> float:
    """CPU seconds to process ``docs`` in batches of ``per``, encoding what is raised."""
    spent = 0.0
    for k in range(0, len(docs), per):
        batch = [(kind, doc, Source(topic, 0, k + i)) for i, doc in enumerate(docs[k:k + per])]
        t = time.process_time()
        out = d.process(batch)
        for r in out.escalations:
            _encode(r)
        spent += time.process_time() - t
        d.take_delta()
    return spent


def _allocated() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _storm(n: int, cases: bool, traced: bool) -> tuple[PartitionDetector, float, float]:
    """A detector with ``n`` visits checked in, then the storm: the detector, the storm's
    CPU seconds, and the bytes it left allocated (0 unless ``traced``). Without
    ``cases``, every escalation shares one empty case and arms no timer: the detector as
    it was before cases, for the side-by-side."""
    settings = Settings(partitions=1)
    d = PartitionDetector(0, settings, ManualClock(NOW), Codec())
    if not cases:
        empty = d.book.new_case("", "", None, "", 0.0)  # arms one timer, due long ago
        d.book.new_case = lambda *_: empty
    _feed(d, list(wl.roster(n, NOW + 3 * 3600)), "roster", settings.topic_roster, 1000)
    _feed(d, list(wl.check_ins(0, n, NOW)), "event", settings.topic_events, 500)
    storm = list(wl.check_ins(0, n, NOW, tag="s", away=True))
    if traced:
        tracemalloc.start()
        before = _allocated()
    seconds = _feed(d, storm, "event", settings.topic_events, 500)
    allocated = _allocated() - before if traced else 0
    if traced:
        tracemalloc.stop()
    return d, seconds, allocated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--visits", type=int, default=100_000)
    args = parser.parse_args(argv)
    n = args.visits
    warm_up()
    # Time first, untraced, alternating; then memory.
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(2):
        for cases in (False, True):
            times[cases].append(_storm(n, cases, traced=False)[1])
    per_cpu_s = {c: n / min(t) for c, t in times.items()}
    bytes_per = {c: _storm(n, c, traced=True)[2] / n for c in (False, True)}
    d, _, _ = _storm(n, True, traced=False)
    settings = d.settings
    opened = len(d.book.records)
    tracemalloc.start()
    before = _allocated()
    at = format_instant(NOW)
    acks = [{"action_id": f"a{i}", "escalation_id": eid, "client_id": r.client_id,
             "type": "acknowledge", "at": at, "by": "u1", "owner_id": "m1"}
            for i, (eid, r) in enumerate(d.book.records.items())]
    ack_s = _feed(d, acks, "action", settings.topic_actions, 500)
    per_ack = (_allocated() - before) / len(acks)
    tracemalloc.stop()
    d.clock.set(NOW + settings.case_owner_sla_s + 1)  # type: ignore[attr-defined]
    t = time.process_time()
    swept = d.sweep()  # acknowledged in time: nothing breaches
    sweep_s = time.process_time() - t
    result = {
        "machine": machine(), "visits": n, "escalations_opened": opened,
        "storm_check_ins_per_cpu_s_without_cases": round(per_cpu_s[False]),
        "storm_check_ins_per_cpu_s_with_cases": round(per_cpu_s[True]),
        "storm_with_vs_without_cases": round(per_cpu_s[True] / per_cpu_s[False], 3),
        "bytes_per_escalation_without_cases": round(bytes_per[False]),
        "bytes_per_escalation_with_cases": round(bytes_per[True]),
        "bytes_per_open_case": round(bytes_per[True] - bytes_per[False]),
        "bytes_an_acknowledgement_adds": round(per_ack),
        "acknowledgements_per_cpu_s": round(len(acks) / ack_s),
        "owner_deadlines_swept_per_cpu_s": round(opened / sweep_s) if sweep_s else None,
        "breaches_after_acknowledgement": len(swept.escalations),
        "command": "python -m benchmarks.cases " + " ".join(argv or []),
    }
    print(f"storm, per CPU second: {per_cpu_s[False]:,.0f} check-ins without cases, "
          f"{per_cpu_s[True]:,.0f} with ({result['storm_with_vs_without_cases']}x)")
    print(f"an open case: {result['bytes_per_open_case']:,} bytes (an escalation and what "
          f"raised it: {bytes_per[False]:,.0f} without, {bytes_per[True]:,.0f} with); an "
          f"acknowledgement adds {per_ack:,.0f}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
