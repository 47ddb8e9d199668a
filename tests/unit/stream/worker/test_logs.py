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
