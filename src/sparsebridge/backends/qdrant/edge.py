"""Qdrant Edge: Qdrant's own engine in this process (``qdrant-edge-py``), one shard directory per collection.

The stored layout is the qdrant-client adapter's (:mod:`.adapter`): a named sparse vector
(``splade``, IDF modifier off unless asked), an optional named dense vector (cosine), UUIDv5 point
ids and the ``{"doc_id", "text", "metadata"}`` payload, plus ``run`` for versioned writes. Queries
are planned by :mod:`.bodies`, with the same decisions as for a Qdrant server; only their spelling
(``qdrant_edge`` classes) differs.

The collection ``C`` of ``qdrant+edge://DIR/C`` is the shard directory ``DIR/C``.

Durability: every change goes through the shard's write-ahead log; ``write`` and ``delete`` return
after the log has it and the change is applied, so an acknowledged write survives the process being
killed (the log is replayed when the shard is loaded again). ``close`` flushes the segments.

One process at a time: an open shard locks its write-ahead log. Opening a shard that another
process (or another backend in this process) holds raises
:class:`~sparsebridge.errors.BackendUnavailableError` naming the directory and, where the OS tells
(Linux ``/proc/locks``), the process that holds it.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from sparsebridge.backends.base import Record, WriteStats, point_id, stored_payload
from sparsebridge.backends.model_identity import MODEL_KEY
from sparsebridge.backends.qdrant.bodies import (
    Leg,
    LegVector,
    NativeFusion,
    WithPayload,
    check_vector_names,
    plan_hybrid,
)
from sparsebridge.backends.validation import (
    check_dense_queries,
    check_dense_slots,
    check_k,
    check_query,
    check_records,
)
from sparsebridge.errors import BackendError, BackendUnavailableError, MissingExtraError, SchemaMismatchError
from sparsebridge.query.fusion import Fusion, FusionMethod
from sparsebridge.query.hybrid import HybridQuery
from sparsebridge.types import SearchHit, SparseVector

__all__ = ["QdrantEdgeBackend", "QdrantEdgeTarget", "lock_holder"]

T = TypeVar("T")

_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
_CONFIG_FILE = "edge_config.json"  # written when a shard is created: a shard is where it is


def qdrant_edge_module() -> Any:
    """The ``qdrant_edge`` module, or an install hint when the ``qdrant-edge`` extra is missing."""
    try:
        import qdrant_edge
    except ImportError as e:
        raise MissingExtraError("qdrant-edge-py", "qdrant-edge") from e
    return qdrant_edge


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


def lock_holder(shard: Path) -> str:
    """Who holds ``shard``'s write-ahead-log lock, as far as the OS tells: ``pid N (command)``.

    Reads Linux ``/proc/locks``; elsewhere, or when no holder is listed, ``another process``.
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
            command = " ".join(Path(f"/proc/{pid}/cmdline").read_bytes().decode().replace("\0", " ").split())
        except (OSError, UnicodeDecodeError):
            command = ""
        return f"pid {pid}" + (f" ({command[:200]})" if command else "")
    return "another process"


def _vector(vector: LegVector) -> Any:
    qe = qdrant_edge_module()
    if isinstance(vector, SparseVector):
        return qe.SparseVector(vector.indices.tolist(), vector.values.tolist())
    return vector.tolist()


class _EdgeDialect:
    """Qdrant Edge's spelling of the requests :mod:`.bodies` plans."""

    def nearest(self, vector: LegVector, *, using: str, limit: int, with_payload: WithPayload) -> Any:
        qe = qdrant_edge_module()
        query = qe.Query.Nearest(_vector(vector), using=using)
        return qe.QueryRequest(limit=limit, query=query, with_payload=with_payload)

    def fused(
        self,
        legs: Sequence[Leg],
        fusion: NativeFusion,
        *,
        candidates: int,
        limit: int,
        with_payload: WithPayload,
    ) -> Any:
        qe = qdrant_edge_module()
        prefetches = [
            qe.Prefetch(limit=candidates, query=qe.Query.Nearest(_vector(vector), using=using))
            for vector, using in legs
        ]
        if fusion.method is FusionMethod.RRF:
            query: Any = qe.Fusion.Rrf(k=fusion.rrf_k)
        elif fusion.method is FusionMethod.DBSF:
            query = qe.Fusion.Dbsf()
        else:
            e = qe.Expression
            terms = [
                e.Mult([e.Constant(w), e.Variable(f"$score[{i}]")]) for i, w in enumerate(fusion.weights)
            ]
            query = qe.Formula(e.Sum(terms), defaults={f"$score[{i}]": 0.0 for i in range(len(legs))})
        return qe.QueryRequest(limit=limit, prefetches=prefetches, query=query, with_payload=with_payload)


EDGE = _EdgeDialect()


def _older_than(version: int) -> Any:
    """The condition of a versioned upsert: points without a run number, or with an older one."""
    qe = qdrant_edge_module()
    return qe.Filter(
        should=[qe.FieldCondition(key="run", range=qe.RangeFloat(lt=version)), qe.IsEmptyCondition(key="run")]
    )


class QdrantEdgeBackend:
    """Write and search SPLADE vectors in a Qdrant Edge shard, in this process.

    Safe to share between threads. Constructing it does no I/O; the shard is created or opened on
    first use and held (locked against other processes) until :meth:`close`.

    Example:
        >>> backend = QdrantEdgeBackend(QdrantEdgeTarget("./data", "docs"))
        >>> backend.ensure_schema()  # doctest: +SKIP
    """

    name = "qdrant-edge"

    def __init__(
        self,
        target: QdrantEdgeTarget,
        *,
        vector_name: str = "splade",
        idf: bool = False,
        dense_size: int | None = None,
        dense_name: str = "dense",
    ) -> None:
        check_vector_names(vector_name, dense_name, dense_size)
        self.target = target
        self.vector_name = vector_name
        self.idf = idf
        self.dense_size = dense_size
        self.dense_name = dense_name
        self._shard: Any = None
        self._opening = threading.Lock()
        self._writes = threading.Lock()  # a write's stale count and its upsert see the same points

    def _config(self) -> Any:
        qe = qdrant_edge_module()
        dense = None
        if self.dense_size is not None:
            dense = {self.dense_name: qe.EdgeVectorParams(size=self.dense_size, distance=qe.Distance.Cosine)}
        sparse = qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf if self.idf else None)
        return qe.EdgeConfig(vectors=dense, sparse_vectors={self.vector_name: sparse})

    def _open(self, *, create: bool) -> Any:
        """The open shard: loaded (the engine checks our vectors against its own), or created."""
        with self._opening:
            if self._shard is not None:
                return self._shard
            qe = qdrant_edge_module()
            path = self.target.path
            if (path / _CONFIG_FILE).is_file():
                opener, how = qe.EdgeShard.load, "open"
            elif path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise BackendError(f"{path} exists and is not a Qdrant Edge shard", backend=self.name)
            elif create:
                path.parent.mkdir(parents=True, exist_ok=True)
                opener, how = qe.EdgeShard.create, "create"
            else:
                raise BackendError(
                    f"collection {self.target.collection!r} does not exist in {self.target.directory} "
                    "(ingest into it first)",
                    backend=self.name,
                    status=404,
                )
            try:
                self._shard = opener(str(path), self._config())
            except Exception as e:  # qdrant_edge raises plain Exception, with the engine's message
                raise self._open_error(e, how) from e
            return self._shard

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

    def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except Exception as e:  # the engine refused: plain Exception with its message
            raise BackendError(f"{what} failed on {self.target.path}: {e}", backend=self.name) from e

    @property
    def _model_file(self) -> Path:
        return Path(self.target.directory) / f".{self.target.collection}.sparsebridge-model.json"

    def stored_model(self) -> dict[str, Any] | None:
        """The model identity, recorded in a file beside the shard (a shard has no metadata)."""
        try:
            data = json.loads(self._model_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            message = f"unreadable model record {self._model_file}: {e}"
            raise BackendError(message, backend=self.name) from None
        found = data.get(MODEL_KEY) if isinstance(data, dict) else None
        return dict(found) if isinstance(found, dict) else None

    def store_model(self, identity: Mapping[str, Any]) -> None:
        """Record the model identity beside the shard (written whole or not at all)."""
        tmp = self._model_file.with_name(self._model_file.name + ".tmp")
        tmp.write_text(json.dumps({MODEL_KEY: dict(identity)}), encoding="utf-8")
        tmp.replace(self._model_file)

    def ensure_schema(self) -> None:
        """Create the shard, or open it and check that it holds our vectors (else SchemaMismatchError)."""
        self._open(create=True)

    def _points(self, records: Sequence[Record], ids: Sequence[str], version: int | None) -> list[Any]:
        """The engine's point objects for ``records`` (stored under ``ids``), tagged with ``version``.

        Most of the time goes into the engine's own conversions (lists into vectors, the payload
        into its JSON form), so the loop does nothing per record beyond those calls.
        """
        qe = qdrant_edge_module()
        make_point, make_sparse = qe.Point, qe.SparseVector
        sparse_name, dense_name = self.vector_name, self.dense_name
        run = {} if version is None else {"run": version}
        points = []
        for record, id_ in zip(records, ids, strict=True):
            sparse = record.vector
            vector: dict[str, Any] = {
                sparse_name: make_sparse(sparse.indices.tolist(), sparse.values.tolist())
            }
            if record.dense is not None:
                vector[dense_name] = record.dense.tolist()
            points.append(make_point(id_, vector, stored_payload(record.document) | run))
        return points

    def write(self, records: Sequence[Record]) -> WriteStats:
        """Upsert records; returns once the shard's write-ahead log has them and they are applied.

        A record with a ``version`` (the run number) stores it in the payload field ``run`` and is
        upserted under a condition (``run`` < version, or no ``run`` yet): a point already written
        with the same or a newer version is left as it is and counted in ``WriteStats.stale``.
        """
        check_records(records)
        check_dense_slots(records, size=self.dense_size, slot=f"the collection's {self.dense_name!r} vector")
        if not records:
            return WriteStats()
        shard = self._open(create=True)
        qe = qdrant_edge_module()
        stale = 0
        with self._writes:
            for version in dict.fromkeys(r.version for r in records):
                group = [r for r in records if r.version == version]
                ids = [point_id(r.document.id) for r in group]
                points = self._points(group, ids, version)
                condition = None
                if version is not None:
                    condition = _older_than(version)
                    stale += self._newer_or_same(shard, ids, version)
                self._call(
                    "upsert", shard.update, qe.UpdateOperation.upsert_points(points, condition=condition)
                )
        return WriteStats(written=len(records) - stale, stale=stale)

    def _newer_or_same(self, shard: Any, ids: list[str], version: int) -> int:
        """How many of ``ids`` are stored with a run number >= ``version`` (the upsert skips them)."""
        stored = self._call("retrieve", shard.retrieve, ids, ["run"], False)
        runs = [(p.payload or {}).get("run") for p in stored]
        return sum(1 for run in runs if isinstance(run, int) and run >= version)

    def delete(self, document_ids: Sequence[str]) -> None:
        """Delete documents by id (missing ids are ignored); returns once the log has it."""
        if isinstance(document_ids, str):
            raise TypeError("pass a list of document ids, not a single string")
        if not document_ids:
            return
        shard = self._open(create=False)
        qe = qdrant_edge_module()
        operation = qe.UpdateOperation.delete_points([point_id(i) for i in document_ids])
        with self._writes:
            self._call("delete", shard.update, operation)

    def search(self, query: SparseVector, *, k: int = 10) -> list[SearchHit]:
        [hits] = self.search_batch([query], k=k)
        return hits

    def search_batch(self, queries: Sequence[SparseVector], *, k: int = 10) -> list[list[SearchHit]]:
        """Top-``k`` hits for each sparse query by dot product, planned as one batch."""
        for query in queries:
            check_query(query)
        check_k(k)
        requests = [
            EDGE.nearest(q, using=self.vector_name, limit=k, with_payload=True) for q in queries if len(q)
        ]
        answers = iter(self._batch("search", requests))
        return [next(answers) if len(q) else [] for q in queries]

    def search_dense_batch(
        self, queries: Sequence[npt.NDArray[np.float32]], *, k: int = 10
    ) -> list[list[SearchHit]]:
        """Top-``k`` hits for each dense query by cosine similarity, planned as one batch."""
        check_k(k)
        checked = self._require_dense(queries)
        return self._batch(
            "dense search",
            [EDGE.nearest(q, using=self.dense_name, limit=k, with_payload=True) for q in checked],
        )

    def search_hybrid_batch(
        self, queries: Sequence[HybridQuery], fusion: Fusion, *, k: int = 10
    ) -> list[list[SearchHit]]:
        """Fused top-``k`` hits for each hybrid query, planned as one batch.

        Native where Qdrant computes ``fusion`` as :mod:`sparsebridge.query.fusion` defines it,
        else the legs are fetched in the same batch and fused here (see
        :func:`~sparsebridge.backends.qdrant.bodies.plan_hybrid`).

        Raises:
            ValueError: A query has a BM25 leg, or the weights do not match the legs.
        """
        check_k(k)
        self._require_dense([q.dense for q in queries if q.dense is not None])
        plan = plan_hybrid(
            queries, fusion, k=k, sparse_name=self.vector_name, dense_name=self.dense_name, dialect=EDGE
        )
        return plan.finish(self._batch("hybrid search", plan.requests))

    def _require_dense(self, vectors: Sequence[object]) -> list[npt.NDArray[np.float32]]:
        slot = f"the collection's {self.dense_name!r} vector"
        return check_dense_queries(vectors, size=self.dense_size, slot=slot)

    def _batch(self, what: str, requests: list[Any]) -> list[list[SearchHit]]:
        if not requests:
            return []
        shard = self._open(create=False)
        qe = qdrant_edge_module()
        answers = self._call(what, shard.query_batch, qe.QueryBatchRequest(requests))
        return [
            [
                SearchHit(
                    id=str((p.payload or {}).get("doc_id", p.id)),
                    score=float(p.score),
                    payload=p.payload or {},
                )
                for p in points
            ]
            for points in answers
        ]

    def count(self) -> int:
        shard = self._open(create=False)
        qe = qdrant_edge_module()
        return int(self._call("count", shard.count, qe.CountRequest(exact=True)))

    def optimize(self) -> bool:
        """Run the engine's segment optimizer to completion; True if it changed any segment.

        Writes land in appendable segments, which are searched as they are but rebuilt in memory
        each time the shard is opened. Optimized segments open at once: worth it after a large
        ingest into a shard that is opened again for searching (see docs/qdrant.md for measured
        costs). Blocks until done.
        """
        shard = self._open(create=False)
        with self._writes:
            return bool(self._call("optimize", shard.optimize))

    def close(self) -> None:
        """Flush the segments to disk and release the shard (and its lock); a no-op when not open."""
        with self._opening:
            shard, self._shard = self._shard, None
        if shard is not None:
            try:
                self._call("flush", shard.flush)
            finally:
                shard.close()

    def __enter__(self) -> QdrantEdgeBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
