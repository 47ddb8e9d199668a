"""Prometheus metrics of one worker, served at ``/metrics`` on its web port.

Every metric is about this worker's own partitions, so sums over workers are meaningful.
Gauges of state (visits tracked, escalations open, lag) are computed at scrape time from the
partitions the worker owns now, so they follow partitions when they move. Labels are low
cardinality: kind, priority, reason, stage, topic, partition; never a client, worker or visit
id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PCounter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
_FAST_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        # The records counters of /progress (also in /metrics): plain numbers, so that a
        # caller polling often does not have every series rendered for it.
        self.received = {"roster": 0, "event": 0, "action": 0}
        self.accepted = {"roster": 0, "event": 0, "action": 0}
        self.records_received = PCounter(
            "ecm_records_received", "Records decoded from the input topics, by kind.",
            ["kind"], registry=r)
        self.work_records = PCounter(
            "ecm_work_records", "Routed records by path: 'direct' when they arrived on their "
            "client's partition and went straight to its detector here, 'forwarded' through "
            "ecm.work.", ["path"], registry=r)
        self.records_accepted = PCounter(
            "ecm_records_accepted", "Records validated and applied, by kind.", ["kind"],
            registry=r)
        self.predictions_sent = PCounter(
            "ecm_run_predictions_sent", "Predicted arrivals the run partitions sent to the "
            "visits' partitions (worker runs).", registry=r)
        self.events_duplicate = PCounter(
            "ecm_events_duplicate", "Events whose event_id was already accepted from another "
            "source position (also dead-lettered as duplicate_event).", registry=r)
        self.events_replayed = PCounter(
            "ecm_events_replayed", "Events seen again from the same source position after a "
            "rebalance or restart, and skipped.", registry=r)
        self.checkpoints = PCounter(
            "ecm_state_checkpoints", "Checkpoints of a partition's state completed in "
            "ecm.state; a rebuild reads from the last one.", registry=r)
        self.deadletters = PCounter(
            "ecm_deadletters", "Input rejected to the dead-letter topic, by reason and stage.",
            ["reason", "stage"], registry=r)
        self.escalations_raised = PCounter(
            "ecm_escalations_raised", "Escalations published as open, by kind and priority.",
            ["kind", "priority"], registry=r)
        self.visit_records = PCounter(
            "ecm_visit_records", "Visit records published to ecm.visits, by outcome and "
            "suggested classification (a record written again when it changes counts again).",
            ["outcome", "suggested"], registry=r)
        self.escalations_resolved = PCounter(
            "ecm_escalations_resolved", "Escalations published as resolved, by kind and "
            "priority.", ["kind", "priority"], registry=r)
        self.time_to_resolution = Histogram(
            "ecm_escalation_time_to_resolution_seconds", "From detection to resolution of an "
            "escalation, by kind.", ["kind"], registry=r,
            buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200))
        self.detection_latency = Histogram(
            "ecm_detection_latency_seconds", "From the instant a rule became true (the "
            "deadline) to the escalation being acknowledged by the broker, by kind. For the "
            "timer kinds (late, missed, no_check_out) this is the monitor's own delay.",
            ["kind"], registry=r, buckets=_LATENCY_BUCKETS)
        self.processing_latency = Histogram(
            "ecm_event_processing_latency_seconds", "From an input message's Kafka timestamp to "
            "the decisions on its records being published; one sample per message.",
            registry=r, buckets=_LATENCY_BUCKETS)
        self.batch_records = Histogram(
            "ecm_batch_records", "Records per batch, by stage.", ["stage"], registry=r,
            buckets=_BATCH_BUCKETS)
        self.kernel_seconds = Histogram(
            "ecm_kernel_seconds", "Time in the geofence kernel per batch.", registry=r,
            buckets=_FAST_BUCKETS)
        self.sweep_seconds = Histogram(
            "ecm_sweep_duration_seconds", "Time of one timer sweep over the owned partitions, "
            "publishing included.", registry=r, buckets=_FAST_BUCKETS)
        self.records_skipped = PCounter(
            "ecm_records_skipped", "Records of a partition's state that could not be read back "
            "or applied, and were skipped: where='state' or 'escalations' while a partition "
            "was rebuilt from that topic, 'sweep' for a timer that failed. Each is logged at "
            "error with its partition and offset.", ["where"], registry=r)
        self.deadletters_replayed = PCounter(
            "ecm_deadletters_replayed", "Rejections of replayed records (after a crash or a "
            "rebalance) whose dead letter was written already, and not written again.",
            registry=r)
        self.deadlines_forced = PCounter(
            "ecm_deadlines_forced", "Sweeps that raised a partition's deadlines without "
            "waiting longer for an input partition that was not read "
            "(ECM_CATCHUP_MAX_HOLD_S): such a deadline may be raised falsely.", registry=r)
        self.publish_retries = PCounter(
            "ecm_publish_retries", "Times records the broker refused or did not acknowledge "
            "were sent again (after a pause): the broker is out of reach or failing.",
            registry=r)
        self.broker_reachable = Gauge(
            "ecm_broker_reachable", "1 while the broker answers this worker's probes and "
            "acknowledges its writes, else 0 (the worker then reports not ready).", registry=r)
        self.case_stage_seconds = Histogram(
            "ecm_case_stage_seconds", "From an escalation's detection to its case's stage "
            "first met: stage='owner' (acknowledged), 'pathway' (a recovery assigned), "
            "'recovery' (the assigned worker's verified check-in, or the completion of a "
            "pathway that sends nobody), by priority.", ["stage", "priority"], registry=r,
            buckets=(60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200))
        self.case_breaches = PCounter(
            "ecm_case_breaches", "Case deadlines nobody met, each raising the case's level: "
            "stage='owner', 'pathway', 'recovery', or 'closure' (a close the evidence did "
            "not support), by priority.", ["stage", "priority"], registry=r)
        self.rebalances = PCounter(
            "ecm_rebalances", "Partition assignments received by this worker.", registry=r)

    def watch_state(self, partitions: Callable[[], Iterable[Any]],
                    lag: Callable[[], dict[tuple[str, int], int]]) -> None:
        """Register the scrape-time gauges over the owned detectors and consumer lag."""
        self.registry.register(_StateCollector(partitions, lag))


class _StateCollector(Collector):
    def __init__(self, partitions: Callable[[], Iterable[Any]],
                 lag: Callable[[], dict[tuple[str, int], int]]) -> None:
        self._partitions = partitions
        self._lag = lag

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        owned = list(self._partitions())
        visits = GaugeMetricFamily("ecm_visits_tracked", "Scheduled visits held by this "
                                   "worker's partitions (cancelled ones included).")
        checked_in = GaugeMetricFamily("ecm_visits_checked_in", "Visits with at least one "
                                       "check-in, on this worker's partitions.")
        pending = GaugeMetricFamily("ecm_deadlines_pending", "Timers armed on this worker: "
                                    "each visit's next deadline (late, then missed, then no "
                                    "check-out) and each waiting event's grace expiry.")
        waiting = GaugeMetricFamily("ecm_events_waiting_for_roster", "Events held for the "
                                    "grace period, waiting for their roster record.")
        parts = GaugeMetricFamily("ecm_partitions_owned", "Work partitions this worker owns.")
        open_ = GaugeMetricFamily("ecm_escalations_open", "Escalations open now on this "
                                  "worker's partitions, by kind and priority.",
                                  labels=["kind", "priority"])
        cases = GaugeMetricFamily("ecm_cases_open", "Escalations not yet closed or resolved "
                                  "on this worker's partitions, by their case's status and "
                                  "priority.", labels=["status", "priority"])
        case_counts: Counter[tuple[str, str]] = Counter()
        open_counts: Counter[tuple[str, str]] = Counter()
        n_visits = n_in = n_pending = n_waiting = 0
        for d in owned:
            n_visits += len(d.visits)
            n_in += d.checked_in
            n_pending += d.deadlines_pending
            n_waiting += len(d.pending)
            open_counts.update(d.book.open_by_kind)
            case_counts.update(d.book.open_by_status)
        visits.add_metric([], n_visits)
        checked_in.add_metric([], n_in)
        pending.add_metric([], n_pending)
        waiting.add_metric([], n_waiting)
        parts.add_metric([], len(owned))
        for (kind, priority), n in sorted(open_counts.items()):
            open_.add_metric([kind, priority], n)
        for (status, priority), n in sorted(case_counts.items()):
            cases.add_metric([status, priority], n)
        lag = GaugeMetricFamily("ecm_consumer_lag_records", "Records between this worker's "
                                "position and the log end, per owned input and work partition.",
                                labels=["topic", "partition"])
        for (topic, partition), n in sorted(self._lag().items()):
            lag.add_metric([topic, str(partition)], n)
        age = GaugeMetricFamily(
            "ecm_state_checkpoint_age_seconds", "Since the oldest last complete checkpoint of "
            "this worker's partitions began (worker clock; a partition without one counts from "
            "its loading). A rebuild starts from it, and the topics' retention must not drop "
            "it. No sample while the worker owns no partition.")
        if owned:
            age.add_metric([], max(d.clock.now() - d.checkpointer.at for d in owned))
        held = GaugeMetricFamily(
            "ecm_deadlines_held_seconds", "How long the longest-waiting due deadline of this "
            "worker's partitions has waited for its input to be read (worker clock; 0 when "
            "none waits): an input partition stalled or behind.")
        waits = [d.clock.now() - t for d in owned if (t := d.held_since()) is not None]
        held.add_metric([], max(waits, default=0.0))
        return [visits, checked_in, pending, waiting, parts, open_, cases, lag, age, held]
