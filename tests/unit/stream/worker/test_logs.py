"""The Kafka client's repeated errors, at a readable rate."""

import logging

from stream.worker.logs import Repeats


def test_a_repeated_message_passes_once_per_interval_and_counts_what_it_held():
    now = [0.0]
    repeats = Repeats(10.0, monotonic=lambda: now[0])

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("aiokafka.conn", logging.ERROR, __file__, 1, msg, None, None)

    assert repeats.filter(record("Unable connect to node %s"))
    assert not repeats.filter(record("Unable connect to node %s"))
    assert repeats.filter(record("Failed fetch messages from %s"))  # another message
    now[0] = 5.0
    assert not repeats.filter(record("Unable connect to node %s"))
    now[0] = 10.5
    again = record("Unable connect to node %s")
    assert repeats.filter(again)
    assert again.msg.endswith("(2 more like it held back in the last 10 s)")


def test_json_logs_are_one_object_a_line_with_the_exception():
    import logging.config

    import orjson

    from stream.worker.logs import JsonFormatter, logging_config

    assert logging_config("text", "info") is None
    config = logging_config("json", "warn")
    assert config is not None and config["root"]["level"] == "WARNING"
    formatter = JsonFormatter()
    record = logging.LogRecord("stream.worker", logging.ERROR, __file__, 1,
                               "partition %d: skipped", (3,), None)
    doc = orjson.loads(formatter.format(record))
    assert doc["level"] == "error" and doc["message"] == "partition 3: skipped"
    assert doc["logger"] == "stream.worker" and doc["ts"].endswith("Z")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in orjson.loads(formatter.format(record))["exc"]
    logging.config.dictConfig(config)  # a configuration the standard library takes
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})


def test_the_probes_assignments_are_not_logged_at_info(caplog):
    """The read marks' probe assigns its consumer partitions several times a second; each
    assignment was an info line of aiokafka's (474 in an hour and a half of one worker)."""
    from stream.worker.logs import quiet_kafka_client

    caplog.set_level(logging.INFO)  # the worker's level
    quiet_kafka_client()
    chatty = logging.getLogger("aiokafka.consumer.subscription_state")
    assert not chatty.isEnabledFor(logging.INFO) and chatty.isEnabledFor(logging.WARNING)
