"""`ecm report` reading the broker: ecm.visits on three partitions with a correction, a
tombstone and a record it cannot read, each partition's records sent as one batch (the
embedded broker reports the end of a partition as if its last batch held one record);
ecm.escalations with a review's two revisions and escalations of other kinds. The totals
are those of the records that stand."""

from __future__ import annotations

import json

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from stream.cli import main
from tests.report_records import at, review, visit_record

pytestmark = pytest.mark.integration


def test_the_report_reads_the_topics_to_their_end(settings, monkeypatch, tmp_path, capsys):
    visits_topic = f"{settings.app_id}.visits"
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        admin.create_topics([NewTopic(visits_topic, 3, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()

    a, b = "client-ann-k", "client-bob-k"
    visits = [
        visit_record("kv-1", client_id=a, start=at(0, 9)),
        visit_record("kv-2", client_id=a, start=at(0, 13), timeliness="late"),
        visit_record("kv-3", client_id=b, start=at(1, 8), timeliness="missed"),
        visit_record("kv-4", client_id=b, start=at(1, 12), timeliness="cancelled"),
        visit_record("kv-5", client_id=b, start=at(2, 12), timeliness="late"),
        visit_record("kv-6", client_id=a, start=at(2, 15)),
        visit_record("kv-7", client_id=a, start=at(9, 9), timeliness="missed"),  # after
        # The late visit's correction: past its missed threshold after all.
        visit_record("kv-2", client_id=a, start=at(0, 13), timeliness="missed",
                     outcome="attended", case_closed_after_s=1200),
    ]
    late = {**review(b, ["kv-5"], detected=at(2, 12.25)), "kind": "late",
            "escalation_id": "kv-5:late"}
    escalations = [
        review(b, ["kv-3"], detected=at(1, 20), revision=1, missed=1),
        late,
        review(b, ["kv-2", "kv-3"], detected=at(1, 20), revision=2, missed=2),
        review(a, ["kv-7"], detected=at(9, 20), missed=1),  # after the range
    ]
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    for doc in visits:
        producer.send(visits_topic, json.dumps(doc).encode(), key=doc["visit_id"].encode())
    producer.send(visits_topic, None, key=b"kv-6")  # kv-6 erased
    producer.send(visits_topic, b"{not a record", key=b"kv-8")
    for doc in escalations:
        producer.send(settings.topic_escalations, json.dumps(doc).encode(),
                      key=doc["escalation_id"].encode())
    producer.flush()
    producer.close()

    monkeypatch.setenv("ECM_TOPIC_VISITS", visits_topic)
    monkeypatch.setenv("ECM_TOPIC_ESCALATIONS", settings.topic_escalations)
    out = tmp_path / "report"
    assert main(["report", "--broker", settings.broker, "--from", "2026-11-23",
                 "--to", "2026-11-29", "--out", str(out), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    totals = json.loads(lines[-1])
    assert {k: totals[k] for k in ("visits", "planned", "on_time", "late", "missed",
                                   "cancelled", "safeguarding_reviews")} == {
        "visits": 5, "planned": 4, "on_time": 1, "late": 1, "missed": 2, "cancelled": 1,
        "safeguarding_reviews": 1}
    assert "skipped 1 of 14 records" in "\n".join(lines)
    assert (out / "safeguarding.csv").read_text().splitlines()[1].endswith("kv-2 kv-3")
