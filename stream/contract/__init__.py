"""The message contract: raw bytes in, validated records or rejections out.

Bad input is data: every check returns either a record or ``(reason, detail)``, which
becomes a :class:`Rejection` carrying the raw bytes, so the dead-letter path is ordinary
code and the worker never raises on input.

* :mod:`~stream.contract.records`: the records (Visit, Event), their source, a rejection;
* :mod:`~stream.contract.checks`: the full checks, the reference, which name each reason;
* :mod:`~stream.contract.onepass`: the one-pass decoder from a message's bytes, their twin;
* :mod:`~stream.contract.codec`: both, as the worker calls them, with their caches;
* :mod:`~stream.contract.deadletter`: the reasons and the dead-letter document;
* ``schemas/``: the JSON Schemas of every topic's messages.
"""

from stream.contract.checks import routing_key, split_message
from stream.contract.codec import Codec, validate_event
from stream.contract.records import SCHEMA_VERSION, Event, Rejection, Source, Visit

__all__ = ["SCHEMA_VERSION", "Codec", "Event", "Rejection", "Source", "Visit", "routing_key",
           "split_message", "validate_event"]
