"""Send a scenario's messages to Kafka when simulated time reaches them.

Events due in the same tick go out in gateway-style batches of ``batch_size`` events per
message (1 allowed); roster records in messages of up to 500; a duty desk's actions one a
message. All are keyed by client: a message holds records of one partition and is sent to
it. A speed of 0 sends everything as fast as the producer takes it, for measuring the
generator itself.

With a :class:`~simulator.watch.EscalationWatch`, a desk's action is held until its
escalation is on the topic (a desk acts on what its board shows), and each action's
simulated send time is noted (``PlayStats.sent``) for the ledger.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import orjson

from simulator.scenario import Message
from simulator.watch import EscalationWatch
from stream.clock import ScaledClock
from stream.security import connection
from stream.settings import Settings
from stream.timeutil import to_datetime
from stream.topics import by_partition

_TICK_S = 0.05
_ROSTER_PER_MESSAGE = 500


@dataclass
class PlayStats:
    messages: int = 0
    events: int = 0
    roster: int = 0
    actions: int = 0
    seconds: float = 0.0
    sent: dict[str, float] = field(default_factory=dict)  # action id -> simulated send time
    # How far the player fell behind the simulated clock (simulated seconds), and the
    # messages it sent later than the guard band: a machine too slow for the speed makes
    # the gateway late, and the ledger cannot call those visits.
    behind_max_s: float = 0.0
    sent_late: int = 0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def play(messages: list[Message], settings: Settings, clock: ScaledClock | None,
         batch_size: int, until: float, progress: bool = True,
         watch: EscalationWatch | None = None, guard_s: float | None = None) -> PlayStats:
    from kafka import KafkaProducer

    producer = KafkaProducer(**connection(settings), linger_ms=5,
                             batch_size=1 << 20, max_request_size=16 << 20, acks=1)
    topics = {"roster": settings.topic_roster, "events": settings.topic_events,
              "actions": settings.topic_actions}
    stats = PlayStats()
    started = time.monotonic()
    last_report = 0.0
    i = 0
    n = len(messages)
    held: list[dict] = []  # actions whose escalation is not on the topic yet
    try:
        while (i < n and messages[i].at <= until) or (held and clock is not None
                                                       and clock.now() <= until):
            now = clock.now() if clock is not None else float("inf")
            due = i < n and messages[i].at <= min(now, until)
            if not due and not held:
                time.sleep(min(_TICK_S, max(0.0, clock.wall_at(messages[i].at) - time.time())))
                continue
            if not due:
                time.sleep(_TICK_S)
            roster, events, actions = [], [], []
            while i < n and messages[i].at <= min(now, until):
                m = messages[i]
                i += 1
                if clock is not None:
                    behind = now - m.at
                    stats.behind_max_s = max(stats.behind_max_s, behind)
                    if guard_s is not None and behind > guard_s:
                        stats.sent_late += 1
                if m.raw is not None:
                    producer.send(topics[m.topic], m.raw)
                    stats.messages += 1
                elif m.topic == "roster":
                    roster.extend(m.records or [])
                elif m.topic == "actions":
                    actions.extend(m.records or [])
                else:
                    events.extend(m.records or [])
                if clock is None and len(events) >= batch_size * 100:
                    break
            # Keyed by client, as docs/contract.md asks of producers: each message goes to its
            # records' partition, and the records skip the ecm.work hop.
            for p, group in by_partition(roster, settings.partitions).items():
                for chunk in _chunks(group, _ROSTER_PER_MESSAGE):
                    producer.send(topics["roster"], orjson.dumps(chunk), partition=p)
                    stats.messages += 1
            stats.roster += len(roster)
            for p, group in by_partition(events, settings.partitions).items():
                for chunk in _chunks(group, batch_size):
                    producer.send(topics["events"],
                                  orjson.dumps(chunk if batch_size > 1 else chunk[0]),
                                  partition=p)
                    stats.messages += 1
            stats.events += len(events)
            # A desk's decisions, one a message, after the events sent with them; in the
            # order decided, each once its escalation is on the desk's board.
            held.extend(actions)
            if watch is not None:
                ready = [d for d in held if watch.has(d["escalation_id"])]
                held = [d for d in held if not watch.has(d["escalation_id"])]
            else:
                ready, held = held, []
            sent_at = clock.now() if clock is not None else 0.0
            for p, group in by_partition(ready, settings.partitions).items():
                for doc in group:
                    producer.send(topics["actions"], orjson.dumps(doc), partition=p)
                    stats.messages += 1
                    stats.sent[doc["action_id"]] = sent_at
            stats.actions += len(ready)
            stats.seconds = time.monotonic() - started
            if progress and stats.seconds - last_report >= 1.0:
                last_report = stats.seconds
                _report(stats, messages[i - 1].at if i else None, i, n)
        producer.flush()
    finally:
        producer.close()
    stats.seconds = time.monotonic() - started
    if progress:
        _report(stats, messages[i - 1].at if i else None, i, n)
        sys.stderr.write("\n")
    return stats


def _chunks(items: list, size: int) -> list[list]:
    return [items[k:k + size] for k in range(0, len(items), max(1, size))]


def _report(stats: PlayStats, sim_now: float | None, done: int, total: int) -> None:
    when = to_datetime(sim_now).strftime("%H:%M:%S") if sim_now else "--:--:--"
    width = 24
    filled = int(width * done / max(1, total))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] sim {when}  "
                     f"events {stats.events:,}  roster {stats.roster:,}  "
                     f"{stats.events_per_s:,.0f} events/s   ")
    sys.stderr.flush()
