"""Where a worker keeps a partition's state between restarts.

* ``memory://``: nothing on disk. A partition is rebuilt by reading its ``ecm.state`` and
  ``ecm.escalations`` partitions from its last checkpoint (stream/state/checkpoint.py), or from the
  beginning before its first.
* ``rocksdb://``: a RocksDB database per partition under ``ECM_DATADIR`` holds the visits,
  the pending events, the escalation records and the offsets up to which it reflects the
  two topics. A restarted worker loads it and reads only what was written after those
  offsets. A store that claims offsets beyond a topic's end (the broker lost its data) is
  discarded and the partition is rebuilt from the topics.

Local writes happen after the broker has acknowledged the message they mirror, so the store
never runs ahead of the topics.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from stream.contract.records import ESCALATION_KINDS, Escalation
from stream.settings import Settings
from stream.state import keys as K
from stream.state.changelog import dumps, visit_docs


@dataclass
class Snapshot:
    visits: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] | None = None
    escalations: list[dict[str, Any]] = field(default_factory=list)
    state_offset: int = 0  # next offset of ecm.state to read
    escalations_offset: int = 0  # next offset of ecm.escalations to read
    failures: dict[str, list[Any]] = field(default_factory=dict)

    def as_delta(self) -> dict[str, Any]:
        return {K.VISITS: self.visits, K.DELETED: [], K.PENDING: self.pending,
                K.FAILURES: self.failures}


class PartitionStore(Protocol):
    def load(self) -> Snapshot: ...
    def reset(self) -> None: ...
    def apply_delta(self, delta: dict[str, Any], offset: int) -> None: ...
    def apply_escalations(self, records: list[Escalation], last_offset: int) -> None: ...
    def close(self) -> None: ...


class MemoryStore:
    def load(self) -> Snapshot:
        return Snapshot()

    def reset(self) -> None:
        pass

    def apply_delta(self, delta: dict[str, Any], offset: int) -> None:
        pass

    def apply_escalations(self, records: list[Escalation], last_offset: int) -> None:
        pass

    def close(self) -> None:
        pass


_STATE_OFFSET = b"o:state"
_ESC_OFFSET = b"o:esc"
_PENDING = b"pending"  # the list whole, as a store written before _WAITING kept it
_WAITING = b"p:"  # a pending event, by its id
_WAITING_END = b"p;"  # the first key after them
_VISIT = b"v:"  # a visit's marks: check-ins, check-outs, events
_RECORD = b"r:"  # its roster record or checkpoint fields, written when a delta carries one
_ESC = b"e:"
_FAILURES = b"f:"  # a client's safeguarding counts, by client id


# A worker opens one database per partition it owns. With RocksDB's defaults each would hold
# up to two 64 MB memtables and its own block cache; these budgets are shared by all of a
# process's databases instead. The memtables flush to disk when they reach it: what the
# store holds is also in memory, in the detector, so the store is written far more than read
# (and read whole, once, when a worker starts: a block cache barely serves it). Memtables
# still full when a load ends stay in the worker's memory: with 1M visits the worker's RSS
# was 73 MB above memory://'s with a 64 MB budget.
ROCKS_MEMTABLE_BUDGET = 32 << 20
ROCKS_MEMTABLE_BYTES = 4 << 20  # one database's memtable
ROCKS_BLOCK_CACHE = 8 << 20


def rocks_options() -> Any:
    """Options for a process's partition databases: open them all with the one object
    (:class:`Stores` does), so that they share its memtable budget and block cache."""
    from rocksdict import BlockBasedOptions, Cache, Options, WriteBufferManager

    options = Options()
    options.create_if_missing(True)
    options.set_write_buffer_size(ROCKS_MEMTABLE_BYTES)
    options.set_write_buffer_manager(WriteBufferManager(ROCKS_MEMTABLE_BUDGET, False))
    table = BlockBasedOptions()
    table.set_block_cache(Cache(ROCKS_BLOCK_CACHE))
    options.set_block_based_table_factory(table)
    return options


class RocksStore:
    def __init__(self, path: Path, options: Any = None) -> None:
        from rocksdict import Rdict

        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._Rdict = Rdict
        self._options = rocks_options() if options is None else options
        self.db = Rdict(str(path), self._options)

    def load(self) -> Snapshot:
        snap = Snapshot()
        records: dict[bytes, Any] = {}
        waiting: list[dict[str, Any]] = []
        legacy: list[dict[str, Any]] | None = None
        for key, value in self.db.items():
            if key.startswith(_VISIT):
                snap.visits.append(orjson.loads(value))
            elif key.startswith(_RECORD):
                records[key[len(_RECORD):]] = orjson.loads(value)
            elif key.startswith(_ESC):
                snap.escalations.append(orjson.loads(value))
            elif key.startswith(_FAILURES):
                snap.failures[key[len(_FAILURES):].decode()] = orjson.loads(value)
            elif key.startswith(_WAITING):
                waiting.append(orjson.loads(value))
            elif key == _PENDING:
                legacy = orjson.loads(value)
            elif key == _STATE_OFFSET:
                snap.state_offset = int(value)
            elif key == _ESC_OFFSET:
                snap.escalations_offset = int(value)
        kept = []
        for vdoc in snap.visits:
            record = records.get(vdoc[K.VISIT_ID].encode())
            if record is not None:
                # A roster record, or a checkpoint's fields (a list): see stream/state/visit.py.
                vdoc[K.VISIT_FIELDS if isinstance(record, list) else K.VISIT_RECORD] = record
                kept.append(vdoc)
        snap.visits = kept
        if legacy is not None:
            # A list written whole by an earlier version: each event gets its own key, so
            # that the removals of later deltas reach it.
            from rocksdict import WriteBatch

            wb = WriteBatch()
            wb.delete(_PENDING)
            for pdoc in legacy:
                _put_waiting(wb, pdoc)
            self.db.write(wb)
            waiting = legacy + waiting
        snap.pending = waiting
        return snap

    def reset(self) -> None:
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self.db = self._Rdict(str(self.path), self._options)

    def apply_delta(self, delta: dict[str, Any], offset: int) -> None:
        from rocksdict import WriteBatch

        wb = WriteBatch()
        for vdoc in visit_docs(delta):
            vid = vdoc[K.VISIT_ID].encode()
            for record in (K.VISIT_RECORD, K.VISIT_FIELDS):
                if record in vdoc:
                    wb.put(_RECORD + vid, dumps(vdoc[record]))
            wb.put(_VISIT + vid, dumps({k: v for k, v in vdoc.items()
                                        if k != K.VISIT_RECORD and k != K.VISIT_FIELDS}))
        for vid in delta.get(K.DELETED, ()):
            wb.delete(_VISIT + vid.encode())
            wb.delete(_RECORD + vid.encode())
            for kind_key in self._escalation_keys(vid):
                wb.delete(kind_key)
        if delta.get(K.PENDING) is not None:  # the list whole: it replaces what is held
            wb.delete(_PENDING)
            wb.delete_range(_WAITING, _WAITING_END)
        for key in (K.PENDING, K.PENDING_MORE, K.PENDING_ADDED):
            for pdoc in delta.get(key) or ():
                _put_waiting(wb, pdoc)
        for eid in delta.get(K.PENDING_REMOVED, ()):
            wb.delete(_WAITING + eid.encode())
        for client, failures in (delta.get(K.FAILURES) or {}).items():
            if failures:
                wb.put(_FAILURES + client.encode(), dumps(failures))
            else:
                wb.delete(_FAILURES + client.encode())
        wb.put(_STATE_OFFSET, str(offset + 1).encode())
        self.db.write(wb)

    def apply_escalations(self, records: list[Escalation], last_offset: int) -> None:
        from rocksdict import WriteBatch

        wb = WriteBatch()
        for r in records:
            wb.put(_ESC + r.escalation_id.encode(), dumps(r))
        wb.put(_ESC_OFFSET, str(last_offset + 1).encode())
        self.db.write(wb)

    def _escalation_keys(self, visit_id: str) -> list[bytes]:
        return [_ESC + f"{visit_id}:{kind}".encode() for kind in ESCALATION_KINDS]

    def close(self) -> None:
        self.db.close()


def _put_waiting(wb: Any, pdoc: dict[str, Any]) -> None:
    """Write a pending event (Pending.to_doc) under its own key."""
    wb.put(_WAITING + pdoc[K.PENDING_EVENT]["event_id"].encode(), orjson.dumps(pdoc))


class Stores:
    """Opens a worker's partition stores; the RocksDB ones share one set of options (its
    memtable budget and block cache), made when the first is opened."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._rocks_options: Any = None

    def open(self, partition: int) -> PartitionStore:
        s = self.settings
        if s.store.startswith("rocksdb://"):
            if self._rocks_options is None:
                self._rocks_options = rocks_options()
            root = Path(s.datadir) / "rocksdb" / s.app_id
            return RocksStore(root / f"{s.topic_work}-{partition}", self._rocks_options)
        return MemoryStore()
