"""What worker runs cost in memory, in process: ``python -m benchmarks.runs``.

``--visits`` visits (the pipeline's workload's visits, on runs of 12 a worker, one every
70 minutes from 07:00) are tracked by one visit partition's detector, measured with
tracemalloc after a collection, side by side:

* **the visits alone** (``ECM_RUNS`` off): the state a visit partition holds per visit;
* **with runs**: the same roster with ``ECM_RUNS`` on, and the predictions the visit
  partition holds at 13:00 (a held prediction's bytes, times how many the run partitions
  have sent then: the next visit of each run, and those due within
  ``SEND_AHEAD_S``);
* **the run partitions**: the runs the roster's facts build (a stop per visit and
  worker), and at 13:00, every worker in and out of each visit before, the predictions
  last sent (what ``changed`` keeps to send only what moved).

The target (issue 25): the run state costs at most 30% more memory per visit. The last
line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import tracemalloc
from typing import Any

import orjson

from benchmarks import workload as wl
from benchmarks.pipeline import machine
from stream.clock import ManualClock
from stream.contract import Codec, Source
from stream.rules.detector import PartitionDetector
from stream.rules.runfacts import apply
from stream.rules.runs import Runs, Travel
from stream.settings import Settings

NOW = 1_800_000_000.0


def _allocated() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _detector(runs: bool) -> PartitionDetector:
    return PartitionDetector(0, Settings(partitions=1, runs=runs), ManualClock(NOW), Codec())


def _feed(d: PartitionDetector, docs: list[dict[str, Any]], kind: str, topic: str,
          facts: list[list[Any]] | None = None) -> None:
    for k in range(0, len(docs), 1000):
        out = d.process([(kind, doc, Source(topic, 0, k + i))
                         for i, doc in enumerate(docs[k:k + 1000])])
        if facts is not None:
            facts += out.runs
        d.take_delta()


PER_RUN = 12
EVERY_S = 70 * 60.0
DAY = NOW - (NOW % 86400) + 86400 + 7 * 3600  # 07:00 UTC the next day
MIDDAY = DAY + 6 * 3600


def _roster(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        doc = wl.visit(i, DAY + (i % PER_RUN) * EVERY_S, minutes=45)
        doc["worker_ids"] = [f"bw{i // PER_RUN}"]
        out.append(doc)
    return out


def _prediction(doc: dict[str, Any]) -> dict[str, Any]:
    return {"visit_id": doc["visit_id"], "worker_id": doc["worker_ids"][0],
            "arrival": MIDDAY + 600.0, "cause": None,
            "basis": ["run", "bv0", MIDDAY - 900.0, 412.5, 8.33]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--visits", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    n = args.visits
    roster = _roster(n)
    settings = Settings(partitions=1)
    _feed(_detector(runs=False), roster[:1000], "roster", settings.topic_roster)  # warm

    tracemalloc.start()
    before = _allocated()
    alone = _detector(runs=False)
    _feed(alone, roster, "roster", settings.topic_roster)
    visits_alone = _allocated() - before
    del alone
    gc.collect()

    before = _allocated()
    d = _detector(runs=True)
    _feed(d, roster, "roster", settings.topic_roster)
    visits_with_runs = _allocated() - before
    predictions = [_prediction(doc) for doc in roster]
    tracemalloc.stop()
    tracemalloc.start()  # the predictions' documents are input, not state
    before = _allocated()
    _feed(d, predictions, "prediction", settings.topic_work)
    held_predictions = _allocated() - before
    del d, predictions
    tracemalloc.stop()

    facts: list[list[Any]] = []
    _feed(_detector(runs=True), roster, "roster", settings.topic_roster, facts)
    # As a run partition reads them: from the bytes of ecm.runs.
    blobs = [orjson.dumps({"facts": facts[k:k + 4000]}) for k in range(0, len(facts), 4000)]
    del facts
    tracemalloc.start()
    before = _allocated()
    runs = Runs(Travel(settings.run_speed_m_s, settings.run_overhead_s))
    for blob in blobs:
        apply(runs, orjson.loads(blob)["facts"], 0, 1)
    run_stops = _allocated() - before
    tracemalloc.stop()
    for i, doc in enumerate(roster):
        start = DAY + (i % PER_RUN) * EVERY_S
        if start < MIDDAY:
            runs.event(doc["worker_ids"][0], doc["visit_id"], "check_in", start + 60)
            runs.event(doc["worker_ids"][0], doc["visit_id"], "check_out", start + 2760)
    tracemalloc.start()
    before = _allocated()
    sent = sum(len(runs.changed(w, MIDDAY)) for w in list(runs.runs))
    run_sent = _allocated() - before
    tracemalloc.stop()

    per = {k: v / n for k, v in (("visits_alone", visits_alone),
                                 ("visit_partition_runs_fact_path",
                                  visits_with_runs - visits_alone),
                                 ("held_predictions", held_predictions * sent / n),
                                 ("run_stops", run_stops), ("run_sent", run_sent))}
    added = (per["visit_partition_runs_fact_path"] + per["held_predictions"]
             + per["run_stops"] + per["run_sent"])
    result = {
        "machine": machine(), "visits": n, "workers": len(runs.runs),
        "predictions_held_at_midday": sent,
        "bytes_per_held_prediction": round(held_predictions / n),
        **{f"bytes_per_visit_{k}": round(v) for k, v in per.items()},
        "bytes_per_visit_runs_add": round(added),
        "runs_add_vs_visits": round(added / per["visits_alone"], 3),
        "target_runs_add_vs_visits": 0.30,
        "command": "python -m benchmarks.runs " + " ".join(argv or []),
    }
    print(f"a visit alone: {per['visits_alone']:,.0f} bytes; runs add "
          f"{added:,.0f} ({result['runs_add_vs_visits']:.2f}x): held predictions "
          f"{per['held_predictions']:,.0f} ({sent:,} held at 13:00), a stop "
          f"{per['run_stops']:,.0f}, what was sent "
          f"{per['run_sent']:,.0f}, the visit partition's fact path "
          f"{per['visit_partition_runs_fact_path']:,.0f}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
