"""The rules: what a partition decides from its visits, its events and the clock.

One module per rule family, each named after what it decides:

* :mod:`~stream.rules.matching`: which visit an event belongs to; events waiting for a
  roster (``duplicate_event``, ``unknown_visit``, ``client_mismatch``, the clock checks);
* :mod:`~stream.rules.attendance`: ``late``, ``missed``, ``no_check_out``, ``wrong_worker``;
* :mod:`~stream.rules.location`: ``location_mismatch``, ``location_unverified``;
* :mod:`~stream.rules.durations`: ``shortened``, ``extended``;
* :mod:`~stream.rules.unscheduled`: ``unscheduled``;
* :mod:`~stream.rules.scoring`: every escalation's priority, impact score and route;

and what they share: :mod:`~stream.rules.book` (what was said of each escalation id),
:mod:`~stream.rules.timers` (the deadlines' heap), :mod:`~stream.rules.shortpath` (the
common check-in, the full rules' parity-tested twin) and :mod:`~stream.rules.detector`
(the facade the worker calls).
"""
