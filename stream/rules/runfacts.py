"""What a visit partition tells the run partitions (``ecm.runs``, keyed by worker), and what
they tell it back (a ``prediction`` item on ``ecm.work``): the wire between the two keyed
views of worker runs (stream/rules/runs.py, stream/rules/at_risk.py).

Both are written and read by the workers alone. A fact is a JSON array, so that a day's
worth stays small:

* a visit, as its roster record stands: ``["v", visit_id, visit partition, start, end,
  lat, lon, late deadline, workers, workers before, cancelled]``, sent to the run
  partition of each of its workers, now and before (a reassignment moves it);
* a check-in or check-out: ``["e", worker, visit_id, type, occurred, received]``, sent to
  the worker's run partition.

Applying a fact twice changes nothing, so a replay after a rebalance or a crash is safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from stream.rules.runs import Prediction, Runs, Stop
from stream.topics import partition_for


def visit_fact(visit_id: str, partition: int, start: float, end: float, lat: float,
               lon: float, late_at: float, workers: Sequence[str], was: Sequence[str],
               cancelled: bool) -> list[Any]:
    return ["v", visit_id, partition, start, end, lat, lon, late_at, list(workers),
            list(was), cancelled]


def event_fact(worker: str, visit_id: str, type_: str, occurred: float,
               received: float) -> list[Any]:
    return ["e", worker, visit_id, type_, occurred, received]


def destinations(fact: list[Any], partitions: int) -> set[int]:
    """The run partitions a fact goes to."""
    if fact[0] == "v":
        return {partition_for(w, partitions) for w in (*fact[8], *fact[9])}
    return {partition_for(fact[1], partitions)}


# Facts a message of ecm.runs carries at most: some 60 bytes each, well inside a message.
FACTS_PER_MESSAGE = 4000


def fact_messages(facts_by_partition: dict[int, list[list[Any]]]) -> list[tuple[int, bytes]]:
    """``(run partition, value)`` messages of at most :data:`FACTS_PER_MESSAGE` facts."""
    out = []
    for p, facts in facts_by_partition.items():
        for k in range(0, len(facts), FACTS_PER_MESSAGE):
            out.append((p, orjson.dumps({"facts": facts[k:k + FACTS_PER_MESSAGE]})))
    return out


def prediction_doc(p: Prediction) -> dict[str, Any]:
    """A prediction as the visit partition reads it (PartitionDetector._prediction)."""
    return {"visit_id": p.visit_id, "worker_id": p.worker_id, "arrival": p.expected_arrival,
            "cause": p.cause, "basis": list(p.basis)}


def apply(runs: Runs, facts: Iterable[list[Any]], partition: int, partitions: int
          ) -> tuple[set[str], int]:
    """Apply facts to a run partition's runs: the workers whose runs changed, and how many
    facts could not be read (written by a worker of another version, or damaged)."""
    touched: set[str] = set()
    bad = 0

    def owns(worker: str) -> bool:
        return partition_for(worker, partitions) == partition

    for f in facts:
        try:
            if f[0] == "v":
                stop = Stop(str(f[1]), int(f[2]), float(f[3]), float(f[4]), float(f[5]),
                            float(f[6]), float(f[7]))
                touched.update(runs.visit(stop, [str(w) for w in f[8]],
                                          [str(w) for w in f[9]], bool(f[10]), owns))
            elif f[0] == "e":
                if owns(str(f[1])) and runs.event(str(f[1]), str(f[2]), str(f[3]),
                                                  float(f[4])):
                    touched.add(str(f[1]))
            else:
                bad += 1
        except (IndexError, TypeError, ValueError):
            bad += 1
    return touched, bad
