"""The worker's Faust application: what it changes in Faust's defaults."""

from __future__ import annotations

from faust.sensors import Monitor
from faust.types import TP

from stream.settings import Settings
from stream.worker.app import create_app


class _Stand:
    """Stands for a message and a stream: what a monitor reads from them."""

    time_in = None

    @property
    def task_owner(self) -> _Stand:
        return self


def _one_message(monitor: Monitor) -> None:
    tp = TP("ecm.events", 3)
    message, stream, event = _Stand(), _Stand(), None
    monitor.on_message_in(tp, 41, message)  # type: ignore[arg-type]
    state = monitor.on_stream_event_in(tp, 41, stream, event)  # type: ignore[arg-type]
    monitor.on_stream_event_out(tp, 41, stream, event, state)  # type: ignore[arg-type]
    monitor.on_message_out(tp, 41, message)  # type: ignore[arg-type]
    monitor.on_tp_commit({tp: 42})


def test_the_worker_monitor_skips_per_message_bookkeeping_but_tracks_commits() -> None:
    app = create_app(Settings())
    _one_message(app.monitor)
    assert (app.monitor.messages_received_total, app.monitor.events_total) == (0, 0)
    assert app.monitor.tp_committed_offsets[TP("ecm.events", 3)] == 42
    # Faust's own monitor counts the same message: the worker's is not the default.
    default = Monitor()
    _one_message(default)
    assert (default.messages_received_total, default.events_total) == (1, 1)
