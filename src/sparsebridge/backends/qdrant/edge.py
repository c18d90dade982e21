"""Qdrant Edge: Qdrant's own engine in this process (``qdrant-edge-py``), one shard directory per collection.

:class:`EdgeStore` is the Edge store of the one Qdrant backend (:mod:`.backend`), with the layout
of the qdrant-client store: the same vectors, point ids, payload and versioned writes, spelled in
``qdrant_edge`` classes (:data:`~.bodies.EDGE`). :class:`QdrantEdgeBackend` builds the backend
over it. The collection ``C`` of ``qdrant+edge://DIR/C`` is the shard directory ``DIR/C``.

Durability: every change goes through the shard's write-ahead log; ``write`` and ``delete`` return
after the log has it and the change is applied, so an acknowledged write survives the process being
killed (the log is replayed when the shard is loaded again). ``close`` flushes the segments.

Free space: the engine writes its files through memory maps, and a write into a mapped page that
the file system cannot allocate kills the process (SIGBUS). Every write and delete therefore first
checks the free space of the shard's file system against what it needs (:func:`bytes_needed`) and
raises :class:`~sparsebridge.errors.BackendError` (status 507) instead; nothing of that call is
written, so a run stops cleanly and resumes once space is freed.

The shard record: ``DIR/.C.sparsebridge-model.json`` beside the shard holds the model identity
(a shard has no metadata) and the number of points at the last clean close. A shard that was
closed cleanly and holds another number when it is opened again is damaged and refused; a shard
whose process died while writing (the record says it was open) is not checked, since replaying
its log legitimately changes the count. A shard that holds points but records no model (the
record deleted, or empty) reports an unknown model, which the model check refuses unless the
mismatch is allowed.

Storage: the target's storage options (:mod:`.storage`: where the index, payload and id tracker
live, the stored value type) are recorded beside the shard when it is created and re-applied on
every open; opening it with other options raises :class:`~sparsebridge.errors.SchemaMismatchError`.

Bounded memory while writing: writes land in an appendable segment held in memory, and the memory
the engine used for written segments stays with the open shard. Every
:data:`ROLLOVER_POINTS` points written, the store therefore optimizes the shard (the written
points move into segments of at most :data:`MAX_SEGMENT_KB` of stored vectors, in files, placed
as the storage options say), closes it, hands freed memory back to the OS (glibc's
``malloc_trim``) and opens it again; a query waits while that happens. The writer's memory then
depends on these two sizes, not on the corpus (docs/qdrant.md has the measured figures).

One process at a time: an open shard locks its write-ahead log. Opening a shard that another
process (or another backend in this process) holds raises
:class:`~sparsebridge.errors.BackendUnavailableError` naming the directory and, where the OS tells
(Linux ``/proc/locks``), the pid and program name of the holder (never its command line, which
may carry secrets).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sparsebridge.backends.model_identity import MODEL_KEY
from sparsebridge.backends.qdrant.backend import Ask, Qdrant
from sparsebridge.backends.qdrant.bodies import (
    EDGE,
    TEXT_FIELD,
    QdrantSchema,
    WriteGroup,
    edge_text_index,
    qdrant_edge_module,
)
from sparsebridge.backends.qdrant.storage import EdgeStorage
from sparsebridge.backends.targets import Target, parse_target
from sparsebridge.backends.validation import check_k
from sparsebridge.errors import BackendError, BackendUnavailableError, SchemaMismatchError
from sparsebridge.query.fusion import Fusion
from sparsebridge.query.hybrid import HybridQuery
from sparsebridge.types import SearchHit

__all__ = [
    "MAX_SEGMENT_KB",
    "ROLLOVER_POINTS",
    "EdgeStore",
    "QdrantEdgeBackend",
    "QdrantEdgeTarget",
    "bytes_needed",
    "lock_holder",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
_CONFIG_FILE = "edge_config.json"  # written when a shard is created: a shard is where it is
_POINTS, _CLOSED, _STORAGE = "points", "closed", "storage"  # fields of the shard record
ROLLOVER_POINTS = 100_000  # points written between two optimize-close-reopen cycles
MAX_SEGMENT_KB = 200_000  # the optimizer's largest segment (stored vectors): what one merge holds

# What a write needs on disk, measured on the engine's files (tmpfs, 0.9): 1.1-2.2x the records'
# vector and payload bytes, plus ~330 bytes per point; a margin covers the pages each of the
# engine's mapped files may start in one call, the record and the flush at close.
_SIZE_FACTOR = 3
_PER_POINT = 512
_MARGIN = 2 << 20


def bytes_needed(groups: Sequence[WriteGroup]) -> int:
    """The free space a write of ``groups`` needs before it is sent (a generous estimate)."""
    points = sum(len(g.ids) for g in groups)
    return _SIZE_FACTOR * sum(g.size for g in groups) + _PER_POINT * points + _MARGIN


@dataclass(frozen=True)
class QdrantEdgeTarget:
    """A collection stored as the Qdrant Edge shard directory ``directory/collection``."""

    directory: str
    collection: str

    def __post_init__(self) -> None:
        if not self.directory:
            raise ValueError("a Qdrant Edge target needs a storage directory")
        if self.collection in (".", "..") or not _COLLECTION_NAME.match(self.collection):
            raise ValueError(f"invalid collection name {self.collection!r}")

    @property
    def path(self) -> Path:
        """The shard directory."""
        return Path(self.directory) / self.collection

    def location(self) -> Target:
        """The target URI this names, parsed (``qdrant+edge://DIRECTORY/COLLECTION``)."""
        return parse_target(f"qdrant+edge://{self.directory}/{self.collection}")


def lock_holder(shard: Path) -> str:
    """Who holds ``shard``'s write-ahead-log lock, as far as the OS tells: ``pid N (program)``.

    Reads Linux ``/proc/locks`` and the holder's program name (``/proc/PID/comm``), never its
    command line; elsewhere, or when no holder is listed, ``another process``.
    """
    try:
        wal = os.stat(shard / "wal")
        locks = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return "another process"
    for line in locks:
        # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:10002500 0 EOF"; a waiter's line has "->" second
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->":
            continue
        try:
            pid = int(fields[4])
            major, minor, inode = fields[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
        except ValueError:
            continue
        if key != (os.major(wal.st_dev), os.minor(wal.st_dev), wal.st_ino):
            continue
        if pid == os.getpid():
            return f"this process (pid {pid}; another backend has it open)"
        try:
            program = Path(f"/proc/{pid}/comm").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            program = ""
        return f"pid {pid}" + (f" ({program})" if program else "")
    return "another process"


def edge_config(schema: QdrantSchema, storage: EdgeStorage) -> Any:
    """The shard configuration for ``schema`` stored as ``storage`` says (the engine checks an
    existing shard's vectors against it, and records the rest)."""
    qe = qdrant_edge_module()
    dense = None
    if schema.dense_size is not None:
        dense = {schema.dense_name: qe.EdgeVectorParams(size=schema.dense_size, distance=qe.Distance.Cosine)}
    sparse = qe.EdgeSparseVectorParams(
        modifier=qe.Modifier.Idf if schema.idf else None,
        memory=storage.index.edge() if storage.index else None,
        datatype=storage.values.edge() if storage.values else None,
    )
    return qe.EdgeConfig(
        vectors=dense,
        sparse_vectors={schema.vector_name: sparse},
        payload_memory=storage.payload.edge() if storage.payload else None,
        id_tracker_memory=storage.ids.edge() if storage.ids else None,
        optimizers=qe.EdgeOptimizersConfig(max_segment_size=MAX_SEGMENT_KB),
    )


def _release_freed_memory() -> None:
    """Hand memory the allocator keeps after frees back to the OS (glibc; elsewhere nothing)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is not None:
        trim(0)


class ShardRecord:
    """The JSON file beside a shard: the model identity, the point count and whether it was closed."""

    def __init__(self, path: Path, *, backend: str) -> None:
        self.path = path
        self._backend = backend

    def read(self) -> dict[str, Any]:
        """The record ({} when there is none).

        Raises:
            BackendError: The file exists but cannot be read as a JSON object.
        """
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise BackendError(f"unreadable shard record {self.path}: {e}", backend=self._backend) from None
        return data if isinstance(data, dict) else {}

    def update(self, **fields: Any) -> None:
        """Set ``fields``, keeping the others; the file is replaced whole, synced, or left as it was."""
        data = self.read() | fields
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            json.dump(data, out)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.path)


class EdgeStore:
    """A Qdrant Edge shard, created or opened on first use and held (locked) until :meth:`close`.

    Safe to share between threads.
    """

    name = "qdrant-edge"
    dialect = EDGE
    text_field: str | None = TEXT_FIELD

    def __init__(
        self, target: QdrantEdgeTarget, schema: QdrantSchema, storage: EdgeStorage | None = None
    ) -> None:
        self.target = target
        self.schema = schema
        self.requested = storage  # None: as recorded (the engine's defaults for a new shard)
        self.storage: EdgeStorage | None = None  # the shard's, once it is open
        self.location = target.location()
        self.record = ShardRecord(
            Path(target.directory) / f".{target.collection}.sparsebridge-model.json", backend=self.name
        )
        self._shard: Any = None
        self._opening = threading.Lock()
        self._writes = threading.Lock()  # a write's stale count and its upsert see the same points
        self._changed = False  # this session marked the record open (the count is re-recorded at close)
        self._since_rollover = 0  # points written since the shard was last optimized and reopened
        self._gate = threading.Condition()  # queries in flight, and a reopen waiting for them
        self._queries = 0
        self._reopening = False

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        """The open shard, kept open (not reopened by a rollover) until the block ends."""
        with self._gate:
            while self._reopening:
                self._gate.wait()
            self._queries += 1
        try:
            yield self._open(create=False)
        finally:
            with self._gate:
                self._queries -= 1
                self._gate.notify_all()

    def _open(self, *, create: bool) -> Any:
        """The open shard: loaded (the engine checks our vectors against its own), or created."""
        with self._opening:
            if self._shard is None:
                self._shard = self._load_or_create(create)
            return self._shard

    def _load_or_create(self, create: bool) -> Any:
        qe = qdrant_edge_module()
        path = self.target.path
        if (path / _CONFIG_FILE).is_file():
            opener, how = qe.EdgeShard.load, "open"
            self.storage = self._recorded_storage()
        elif path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise BackendError(f"{path} exists and is not a Qdrant Edge shard", backend=self.name)
        elif create:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._check_space(path.parent, _MARGIN, "a new shard")
            opener, how = qe.EdgeShard.create, "create"
            self.storage = self.requested or EdgeStorage()
            self.record.update(**{_STORAGE: self.storage.to_json()})  # before the shard: never unrecorded
        else:
            raise BackendError(
                f"collection {self.target.collection!r} does not exist in {self.target.directory} "
                "(ingest into it first)",
                backend=self.name,
                status=404,
            )
        try:
            shard = opener(str(path), edge_config(self.schema, self.storage))
        except Exception as e:  # qdrant_edge raises plain Exception, with the engine's message
            raise self._open_error(e, how) from e
        if how == "open":
            self._check_count(shard)
        if self.schema.bm25 and not self._has_text_index(shard):
            logger.info("building the BM25 text index of %s", path)
            operation = qe.UpdateOperation.create_field_index(TEXT_FIELD, edge_text_index())
            try:
                self._call("create the text index", shard.update, operation)
            except BackendError:
                shard.close()
                raise
        return shard

    def _recorded_storage(self) -> EdgeStorage:
        """The storage the shard was created with (a shard without a record of it: the engine's
        defaults, as every shard made before storage options were recorded); refuses other
        requested options."""
        recorded = self.record.read().get(_STORAGE, {})
        try:
            storage = EdgeStorage.parse(recorded if isinstance(recorded, dict) else {})
        except ValueError as e:
            raise BackendError(
                f"unreadable storage options in {self.record.path}: {e}", backend=self.name
            ) from None
        if self.requested is not None and self.requested != storage:
            raise SchemaMismatchError(
                f"collection {self.target.collection!r} in {self.target.directory} was created with "
                f"the storage options {storage.query() or '(the defaults)'!r}, not "
                f"{self.requested.query() or '(the defaults)'!r}: open it without storage options, "
                "or ingest into a new collection to store it otherwise",
                backend=self.name,
            )
        return storage

    def _has_text_index(self, shard: Any) -> bool:
        index = self._call("info", shard.info).payload_schema.get(TEXT_FIELD)
        return index is not None and getattr(index.params, "scoring", None) is not None

    def has_text_index(self) -> bool:
        """Whether the shard has the BM25 text index (False: no shard yet)."""
        if not (self.target.path / _CONFIG_FILE).is_file():
            return False
        with self._reading() as shard:
            return self._has_text_index(shard)

    def check_text_index(self) -> None:
        """Refuse a BM25 leg on a shard created without the text index (else the engine's error).

        Raises:
            BackendError: The shard has no BM25 text index on ``text`` (status 400).
        """
        if not self.has_text_index():
            raise BackendError(
                f"collection {self.target.collection!r} in {self.target.directory} has no BM25 text "
                "index, so it has no BM25 leg: ingest into it with --bm25 (bm25=True), which builds "
                "the index",
                backend=self.name,
                status=400,
            )

    def _open_error(self, error: Exception, how: str) -> BackendError:
        message, path = str(error), self.target.path
        if "WouldBlock" in message:  # the write-ahead log's lock is taken
            return BackendUnavailableError(
                f"the shard {path} is open in {lock_holder(path)}; "
                "a Qdrant Edge shard is used by one process at a time",
                backend=self.name,
            )
        _, incompatible, detail = message.partition("config is incompatible with existing segments: ")
        if incompatible:
            return SchemaMismatchError(
                f"collection {self.target.collection!r} in {self.target.directory} exists with another "
                f"schema: {detail}",
                backend=self.name,
            )
        return BackendError(f"cannot {how} the shard {path}: {message}", backend=self.name)

    def _check_count(self, shard: Any) -> None:
        """Refuse a cleanly closed shard that holds another number of points than it was closed with."""
        recorded = self.record.read()
        if recorded.get(_CLOSED) is not True or not isinstance(recorded.get(_POINTS), int):
            return
        held = self._count(shard)
        if held != recorded[_POINTS]:
            shard.close()
            raise BackendError(
                f"the shard {self.target.path} is damaged: it holds {held} points, but held "
                f"{recorded[_POINTS]} when it was last closed ({self.record.path}); restore it from "
                "a copy, or delete it and ingest again",
                backend=self.name,
            )

    def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except Exception as e:  # the engine refused: plain Exception with its message
            raise BackendError(f"{what} failed on {self.target.path}: {e}", backend=self.name) from e

    def _check_space(self, directory: Path, needed: int, what: str) -> None:
        """Refuse to write ``what`` into ``directory`` when its file system has less than ``needed`` free."""
        stat = os.statvfs(directory)
        free = stat.f_bavail * stat.f_frsize
        if free < needed:
            raise BackendError(
                f"not enough free space for the shard {self.target.path}: {free} bytes free, {what} "
                f"needs about {needed}; nothing of it was written (free some space, then resume)",
                backend=self.name,
                status=507,
            )

    def _before_change(self, needed: int) -> None:
        """Refuse a change the file system has no room for; mark the record open before the first one."""
        self._check_space(self.target.path, needed, "the change")
        if not self._changed:
            self.record.update(**{_CLOSED: False})
            self._changed = True

    def ensure_schema(self) -> None:
        """Create the shard, or open it and check that it holds our vectors (else SchemaMismatchError)."""
        self._open(create=True)

    def upsert(self, groups: Sequence[WriteGroup]) -> int:
        """Upsert under each group's condition; counts the points a condition left as they were.
        Every :data:`ROLLOVER_POINTS` points, the shard is optimized and reopened (module docstring)."""
        qe = qdrant_edge_module()
        stale = 0
        with self._writes:
            shard = self._open(create=True)
            self._before_change(bytes_needed(groups))
            for group in groups:
                if group.version is not None:
                    stale += self._newer_or_same(shard, group.ids, group.version)
                operation = qe.UpdateOperation.upsert_points(group.points, condition=group.condition)
                self._call("upsert", shard.update, operation)
            self._since_rollover += sum(len(g.ids) for g in groups)
            if self._since_rollover >= ROLLOVER_POINTS:
                self._rollover(shard)
        return stale

    def _rollover(self, shard: Any) -> None:
        """Optimize, close, release freed memory, reopen (holding the write lock; queries wait)."""
        self._call("optimize", shard.optimize)
        with self._gate:
            self._reopening = True
            while self._queries:
                self._gate.wait()
        try:
            with self._opening:
                self._shard = None
                self._call("flush", shard.flush)
                shard.close()
                _release_freed_memory()
                assert self.storage is not None
                config = edge_config(self.schema, self.storage)
                try:
                    self._shard = qdrant_edge_module().EdgeShard.load(str(self.target.path), config)
                except Exception as e:
                    raise self._open_error(e, "open") from e
            self._since_rollover = 0
        finally:
            with self._gate:
                self._reopening = False
                self._gate.notify_all()

    def _newer_or_same(self, shard: Any, ids: list[str], version: int) -> int:
        """How many of ``ids`` are stored with a run number >= ``version`` (the upsert skips them)."""
        stored = self._call("retrieve", shard.retrieve, ids, ["run"], False)
        runs = [(p.payload or {}).get("run") for p in stored]
        return sum(1 for run in runs if isinstance(run, int) and run >= version)

    def delete(self, ids: Sequence[str]) -> None:
        operation = qdrant_edge_module().UpdateOperation.delete_points(list(ids))
        with self._writes:
            shard = self._open(create=False)
            self._before_change(bytes_needed([]))
            self._call("delete", shard.update, operation)

    def query(self, what: str, requests: Sequence[Any]) -> list[list[Any]]:
        with self._reading() as shard:
            answers = self._call(
                what, shard.query_batch, qdrant_edge_module().QueryBatchRequest(list(requests))
            )
        return [list(points) for points in answers]

    def count(self) -> int:
        with self._reading() as shard:
            return self._count(shard)

    def _count(self, shard: Any) -> int:
        return int(self._call("count", shard.count, qdrant_edge_module().CountRequest(exact=True)))

    def optimize(self) -> bool:
        """Run the engine's segment optimizer to completion; True if it changed any segment."""
        with self._writes:
            shard = self._open(create=False)
            self._before_change(bytes_needed([]))
            return bool(self._call("optimize", shard.optimize))

    def stored_model(self) -> dict[str, Any] | None:
        """The recorded model identity; None for a shard without points (or no shard), and ``{}``
        (an unknown model) for a shard that holds points but records none."""
        found = self.record.read().get(MODEL_KEY)
        if isinstance(found, dict) and found:
            return dict(found)
        if not (self.target.path / _CONFIG_FILE).is_file() or self.count() == 0:
            return None
        return {}

    def store_model(self, identity: Mapping[str, Any]) -> None:
        """Record the model identity beside the shard (written whole or not at all)."""
        self.record.update(**{MODEL_KEY: dict(identity)})

    def close(self) -> None:
        """Flush the segments, record the point count if this session changed it, release the shard."""
        with self._opening:
            shard, self._shard = self._shard, None
        if shard is None:
            return
        try:
            self._call("flush", shard.flush)
            if self._changed or _POINTS not in self.record.read():
                self._record_closed(self._count(shard))
        finally:
            shard.close()

    def _record_closed(self, held: int) -> None:
        try:
            self.record.update(**{_POINTS: held, _CLOSED: True})
        except OSError as e:  # the record stays "open": the next open does not check the count
            logger.warning("could not record the point count in %s: %s", self.record.path, e)


class QdrantEdgeBackend(Qdrant[EdgeStore]):
    """Write and search SPLADE vectors in a Qdrant Edge shard, in this process.

    Safe to share between threads. Constructing it does no I/O; the shard is created or opened on
    first use and held (locked against other processes) until :meth:`close`. ``bm25`` builds the
    text index of the BM25 leg (:meth:`search_text_batch`, hybrid queries with a text);
    ``storage`` places the shard's parts (:mod:`.storage`; None: as recorded with the shard).

    Example:
        >>> backend = QdrantEdgeBackend(QdrantEdgeTarget("./data", "docs"))
        >>> backend.location.uri
        'qdrant+edge://./data/docs'
        >>> backend.ensure_schema()  # doctest: +SKIP
    """

    def __init__(
        self,
        target: QdrantEdgeTarget,
        *,
        vector_name: str = "splade",
        idf: bool = False,
        dense_size: int | None = None,
        dense_name: str = "dense",
        bm25: bool = False,
        storage: EdgeStorage | None = None,
    ) -> None:
        if not isinstance(bm25, bool):
            raise TypeError(f"bm25 must be True or False, got {bm25!r}")
        if storage is not None and not isinstance(storage, EdgeStorage):
            raise TypeError(f"storage must be an EdgeStorage or None, got {type(storage).__name__}")
        schema = QdrantSchema(vector_name, idf, dense_size, dense_name, bm25)
        super().__init__(EdgeStore(target, schema, storage), schema)
        self.target = target

    def has_text_index(self) -> bool:
        """Whether the shard has the BM25 text index (built with ``bm25=True``): its BM25 leg works."""
        return self._live().has_text_index()

    def has_text_leg(self) -> bool:
        """Whether the BM25 leg can run: opened with ``bm25=True`` (the index is built on first use)
        or the shard has the index."""
        return self.schema.bm25 or self.has_text_index()

    def search_text_batch(self, queries: Sequence[str], *, k: int = 10) -> list[list[SearchHit]]:
        """Top-``k`` hits by BM25 over the text index of ``text`` for each query text, best first.

        Raises:
            BackendError: The shard was created without the BM25 text index (``bm25=True``).
        """
        if isinstance(queries, str):
            raise TypeError("pass a list of query texts, not a single string")
        for text in queries:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"a query must be a non-blank string, got {text!r}")
        check_k(k)
        store = self._live()
        store.check_text_index()
        return self._top("text search", [Ask(text, TEXT_FIELD, k) for text in queries])

    def search_hybrid_batch(
        self, queries: Sequence[HybridQuery], fusion: Fusion, *, k: int = 10
    ) -> list[list[SearchHit]]:
        """Fused top-``k`` hits for each hybrid query (see :meth:`Qdrant.search_hybrid_batch`); a BM25
        leg needs the shard's text index.

        Raises:
            BackendError: A query has a BM25 leg and the shard has no BM25 text index.
        """
        if any(query.text is not None for query in queries):
            self._live().check_text_index()
        return super().search_hybrid_batch(queries, fusion, k=k)

    def optimize(self) -> bool:
        """Run the engine's segment optimizer to completion; True if it changed any segment.

        Writes land in appendable segments, which are searched as they are but rebuilt in memory
        each time the shard is opened. Optimized segments open at once: worth it after a large
        ingest into a shard that is opened again for searching (see docs/qdrant.md for measured
        costs). Blocks until done.
        """
        return self._live().optimize()
