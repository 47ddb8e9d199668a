"""The pipeline benchmark's small variant: real workers under load, answers checked.

The full run (``python -m benchmarks.pipeline``) stays out of the suite; this one runs the
same phases on a small roster so that a change that loses, invents or repeats escalations
under load, or stops a phase from finishing, fails here. It asserts answers, not speeds.
"""

from __future__ import annotations

import pytest

from benchmarks.pipeline import SCALES, run

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)
def test_small_pipeline_benchmark_answers_exactly(tmp_path):
    scale = SCALES["small"]
    result = run(scale, tmp_path, log=lambda _: None)
    assert result["escalations_expected"] > scale.latency_visits
    assert (result["escalations_missing"], result["escalations_false"],
            result["escalations_duplicate"]) == (0, 0, 0), result
    # Every unattended visit was raised late once, every live wrong-place check-in too, and
    # every check-in of the storm (counted among the expected).
    assert result["escalations_expected"] > (scale.storm_batched_events
                                             + scale.storm_single_events)
    assert result["latency_timer_s"]["n"] == scale.latency_visits
    assert result["latency_timer_storm_s"]["n"] == scale.timer_storm_visits
    assert result["outage_raised_after_restart_s"]["n"] == scale.outage_visits
    assert result["outage_backlog_events_per_s"] > 0
    assert result["latency_event_s"]["n"] > 0
    for key in ("roster_ingest_visits_per_s", "events_per_s_100", "events_per_s_1",
                "events_per_s_100_unkeyed", "events_per_s_1_unkeyed",
                "client_limit_events_per_s_100", "faust_floor_events_per_s_1",
                "faust_floor_quiet_events_per_s_1", "events_per_s_storm_100",
                "events_per_s_storm_1", "events_per_s_storm_100_unkeyed",
                "events_per_s_storm_1_unkeyed"):
        assert result[key] > 0, key
    lanes = result["lanes"]
    for lane in ("streams", "batch"):
        for key in ("roster_visits_per_s", "events_per_s_1", "events_per_s_100"):
            assert lanes[f"{key}_{lane}"] > 0, (key, lane)
        assert lanes[f"escalations_{lane}"] == {"missing": 0, "false": 0, "duplicate": 0}
    assert lanes["escalations_expected"] > 0
    # With visit records on, one record a visit, each attended on time.
    records = result["records"]
    assert records["records_wrong"] == 0 and records["records_per_round"] == scale.lane_visits
    assert records["events_per_s_on"] > 0 and records["events_per_s_off"] > 0
    base = result["baseline"]
    assert base["escalations"] == base["escalations_expected"] > 0
    assert result["sweep"]["sweep_1000_due_raised"] > 0
