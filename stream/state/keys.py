"""Every key of an ``ecm.state`` document, named once.

The changelog is written compactly (a million visits are written in a day), so its keys are
one or two letters; this module is where each is spelled and what it means is said. Every
reader and writer of a document (stream/state/visit.py, changelog.py, checkpoint.py,
store.py, recovery.py) uses these names. Changing a value changes the changelog's format:
a worker could no longer read the topics an older one wrote.
"""

from typing import Final

# ---- a document: a delta, one part of a delta, or a checkpoint slice ----------------------
PARTITION: Final = "p"  # the partition it is of
VISITS: Final = "visits"  # visits changed: dicts (VISIT_*) or rows (VisitState.to_doc)
DELETED: Final = "deleted"  # ids of visits forgotten after their retention
PENDING: Final = "pending"  # the waiting events whole (a checkpoint's first slice), or null
PENDING_MORE: Final = "pending_more"  # the rest of a whole list too big for one document
PENDING_ADDED: Final = "pa"  # events that began to wait
PENDING_REMOVED: Final = "pr"  # ids of events matched or expired
BASE: Final = "b"  # the ecm.state offset a replay starts from: the last complete checkpoint
BASE_TIME: Final = "bt"  # when that checkpoint began, on the worker clock
FIRSTS: Final = "fc"  # first check-ins taken by the short path, as columns (FIRST_*)
ESCALATIONS: Final = "esc"  # a checkpoint slice's escalation records
FAILURES: Final = "sf"  # per client, its late and missed visits counted for safeguarding
#                        (stream/rules/safeguarding.py): the client's list whole, [] once none
ESCALATIONS_FROM: Final = "e"  # a checkpoint's first slice: the ecm.escalations offset the
#                                replay reads on from, after the records of the slices

# ---- a visit in VISITS, as a dict ---------------------------------------------------------
VISIT_ID: Final = "id"
VISIT_RECORD: Final = "v"  # its roster record as received (the first delta after it came)
VISIT_FIELDS: Final = "s"  # or its validated fields (a checkpoint, a record from the bytes)
VISIT_CHECKINS: Final = "ci"  # worker id -> mark, or [worker id, mark]
VISIT_CHECKOUTS: Final = "co"
VISIT_EVENTS: Final = "ev"  # event id -> its source, [topic, partition, offset, index]

# ---- a waiting event, in PENDING, PENDING_MORE or PENDING_ADDED -----------------------------
PENDING_EVENT: Final = "e"  # the event's object
PENDING_SOURCE: Final = "s"
PENDING_RECEIVED: Final = "r"  # when it began to wait, on the worker clock
PENDING_EXPIRES: Final = "x"  # when its grace runs out

# ---- FIRSTS: entry i of each column is one visit's first check-in -------------------------
FIRST_IDS: Final = "id"  # visit ids
FIRST_WORKERS: Final = "w"
FIRST_OCCURRED: Final = "o"
FIRST_RECEIVED: Final = "r"  # one number when the whole batch was received at one instant
FIRST_EVENTS: Final = "e"  # event ids
FIRST_SOURCES: Final = "s"
