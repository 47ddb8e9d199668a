"""``ecm report``: the late and missed visits as a management meeting reviews them (the late
and missed policy, 5.6 and 5.10: "indexed on each of: reason for delay, care worker
initially allocated, service users"), from the visit records on ``ecm.visits`` and the
safeguarding reviews on ``ecm.escalations``.

    read.py       the topics, or JSON-lines files, to the last record of each visit and the
                  last revision of each safeguarding review
    load.py       those records into DuckDB: the tables ``visits`` and ``safeguarding``
    pseudonym.py  keyed pseudonyms for worker, client and visit ids
    tables.py     the report's tables, one SQL query each
    charts.py     its charts, drawn offline as inline SVG
    page.py       the self-contained HTML page
    cli.py        the command, and the files it writes
"""

from __future__ import annotations

from stream.errors import EcmError


class ReportError(EcmError):
    """The report cannot be made: a topic is missing, the broker stops answering, or the
    arguments ask for the impossible."""
