"""Qdrant sparse collections: embedded local mode (the default) or a server.

The collection holds one named sparse vector (``splade`` by default), with the IDF modifier off
(SPLADE weights already encode importance; turn it on for BM25-like vectors), and optionally a
named dense vector slot. Point ids are UUIDv5 of the user's document id, so rewrites are
idempotent; the original id, the text and the metadata are kept in the payload.

Embedded Qdrant keeps its points in a sqlite file and commits every point on its own. Left as
qdrant-client opens it (rollback journal, ``synchronous=FULL``) each point costs several fsyncs,
which made the storage, not Qdrant, the cost of a write. The first write switches that database to
WAL with ``synchronous=NORMAL`` (a point's commit appends to the log, no fsync) and every ``write``
and ``delete`` ends with a checkpoint that syncs the log and the database file before it returns:
an acknowledged write is on disk, as before, at a few fsyncs per call instead of per point.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from sparsebridge.backends.base import Record, WriteStats, point_id, stored_payload
from sparsebridge.backends.model_identity import MODEL_KEY
from sparsebridge.backends.qdrant.bodies import (
    check_vector_names,
    dense_request,
    plan_hybrid,
    qdrant_client_module,
    sparse_request,
)
from sparsebridge.backends.retry import RetryPolicy, call_with_retry, classify_failure, is_retryable
from sparsebridge.backends.validation import (
    check_dense_queries,
    check_dense_slots,
    check_k,
    check_query,
    check_records,
)
from sparsebridge.errors import BackendError, SchemaMismatchError
from sparsebridge.query.fusion import Fusion
from sparsebridge.query.hybrid import HybridQuery
from sparsebridge.types import SearchHit, SparseVector

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

__all__ = ["QdrantBackend", "QdrantTarget"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")


@dataclass(frozen=True)
class QdrantTarget:
    """Where the collection lives: an embedded storage ``path`` or a server ``url``."""

    collection: str
    path: str | None = None
    url: str | None = None
    api_key: str | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of path (embedded Qdrant) or url (Qdrant server)")
        if not _COLLECTION_NAME.match(self.collection):
            raise ValueError(f"invalid Qdrant collection name {self.collection!r}")
        if self.api_key is not None and self.url is None:
            raise ValueError("an API key only applies to a Qdrant server (url)")


def _qdrant() -> Any:
    return qdrant_client_module()


def _is_transient(error: BaseException) -> bool:
    """Retry what :func:`~sparsebridge.backends.retry.classify_failure` retries, and no answer at all."""
    exceptions = _qdrant().http.exceptions
    if isinstance(error, exceptions.UnexpectedResponse):
        return is_retryable(classify_failure(error.status_code))
    return isinstance(error, (exceptions.ResponseHandlingException, ConnectionError, TimeoutError))


def _older_than(version: int) -> Any:
    """The update filter of a versioned write: points without a run number, or with an older one."""
    models = _qdrant().models
    return models.Filter(
        should=[
            models.FieldCondition(key="run", range=models.Range(lt=version)),
            models.IsEmptyCondition(is_empty=models.PayloadField(key="run")),
        ]
    )


def _local_storage(client: Any, collection: str) -> sqlite3.Connection | None:
    """The sqlite connection embedded Qdrant persists ``collection`` in, or None.

    qdrant-client's local mode keeps it at ``client._client.collections[name].storage.storage``
    (a private layout, checked at each step): an in-memory client, a server client or another
    layout gives None, and writes then keep qdrant-client's own per-point commits.
    """
    collections = getattr(getattr(client, "_client", None), "collections", None)
    if not isinstance(collections, dict):
        return None
    storage = getattr(getattr(collections.get(collection), "storage", None), "storage", None)
    return storage if isinstance(storage, sqlite3.Connection) else None


def _defer_sync(storage: sqlite3.Connection) -> bool:
    """Let each point's commit skip its fsync (``_checkpoint`` makes a call durable); False if not WAL."""
    [mode] = storage.execute("PRAGMA journal_mode=WAL").fetchone()
    if str(mode).lower() != "wal":
        return False
    storage.execute("PRAGMA synchronous=NORMAL")
    return True


def _checkpoint(storage: sqlite3.Connection) -> None:
    """Sync the log, copy it into the database file, sync that and empty the log."""
    busy, frames, copied = storage.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy or copied != frames:
        raise BackendError(
            f"embedded Qdrant's storage checkpoint did not complete ({copied} of {frames} frames): "
            "the write is applied but not known to be on disk",
            backend="qdrant",
        )


class QdrantBackend:
    """Write and search SPLADE vectors in a Qdrant collection.

    Example:
        >>> backend = QdrantBackend(QdrantTarget("docs", path="./qdrant-data"))
        >>> backend.ensure_schema()  # doctest: +SKIP
    """

    name = "qdrant"

    def __init__(
        self,
        target: QdrantTarget,
        *,
        vector_name: str = "splade",
        idf: bool = False,
        dense_size: int | None = None,
        dense_name: str = "dense",
        batch_size: int = 256,
        retry: RetryPolicy | None = None,
        client: QdrantClient | None = None,
    ) -> None:
        check_vector_names(vector_name, dense_name, dense_size)
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self.target = target
        self.vector_name = vector_name
        self.idf = idf
        self.dense_size = dense_size
        self.dense_name = dense_name
        self.batch_size = batch_size
        self.retry = retry or RetryPolicy()
        self._client = client
        self._local_writes = threading.Lock()  # embedded Qdrant is not safe for concurrent writers
        self._deferred: sqlite3.Connection | None = None  # the storage whose commits skip fsync

    @property
    def client(self) -> QdrantClient:
        if self._client is None:
            qdrant_client = _qdrant()
            if self.target.path is not None:
                self._client = qdrant_client.QdrantClient(path=self.target.path)
            else:
                self._client = qdrant_client.QdrantClient(
                    url=self.target.url, api_key=self.target.api_key, timeout=30
                )
        return self._client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        UnexpectedResponse = _qdrant().http.exceptions.UnexpectedResponse

        try:
            return call_with_retry(
                lambda: fn(*args, **kwargs),
                policy=self.retry,
                is_transient=_is_transient,
                backend=self.name,
                what=what,
            )
        except UnexpectedResponse as e:
            raise BackendError(
                f"{what} failed: {e.status_code} {e.content!r}", backend=self.name, status=e.status_code
            ) from e

    def ensure_schema(self) -> None:
        """Create the collection, or check that the existing one has the same vectors."""
        models = _qdrant().models
        collection = self.target.collection
        if not self._call("collection check", self.client.collection_exists, collection):
            dense = (
                {self.dense_name: models.VectorParams(size=self.dense_size, distance=models.Distance.COSINE)}
                if self.dense_size
                else {}
            )
            modifier = models.Modifier.IDF if self.idf else models.Modifier.NONE
            self._call(
                "create collection",
                self.client.create_collection,
                collection,
                vectors_config=dense,
                sparse_vectors_config={self.vector_name: models.SparseVectorParams(modifier=modifier)},
            )
            return
        params = self._call("get collection", self.client.get_collection, collection).config.params
        problems = self._schema_problems(params)
        if problems:
            raise SchemaMismatchError(
                f"collection {collection!r} exists with another schema: " + "; ".join(problems),
                backend=self.name,
            )

    def _schema_problems(self, params: Any) -> list[str]:
        models = _qdrant().models
        problems = []
        sparse = params.sparse_vectors or {}
        if self.vector_name not in sparse:
            problems.append(f"no sparse vector named {self.vector_name!r} (has {sorted(sparse)})")
        else:
            has_idf = sparse[self.vector_name].modifier == models.Modifier.IDF
            if has_idf != self.idf:
                problems.append(
                    f"IDF modifier is {'on' if has_idf else 'off'}, wanted {'on' if self.idf else 'off'}"
                )
        if self.dense_size is not None:
            dense = params.vectors if isinstance(params.vectors, dict) else {}
            if self.dense_name not in dense:
                problems.append(f"no dense vector named {self.dense_name!r}")
            elif dense[self.dense_name].size != self.dense_size:
                problems.append(
                    f"dense vector {self.dense_name!r} has size {dense[self.dense_name].size}, "
                    f"wanted {self.dense_size}"
                )
        return problems

    def _points(self, records: Sequence[Record], version: int | None) -> list[Any]:
        """The points of ``records``, built without pydantic validation.

        Every field is already checked (``check_records``, ``Record``, ``Document``): sorted unique
        int32 indices and finite positive float32 values as Python ints and floats, a UUID string
        id, a strict-JSON payload; re-validating them took half the time of building a point.
        """
        models = _qdrant().models
        construct_point = models.PointStruct.model_construct
        construct_sparse = models.SparseVector.model_construct
        run = {} if version is None else {"run": version}
        points = []
        for record in records:
            vector: dict[str, Any] = {
                self.vector_name: construct_sparse(
                    indices=record.vector.indices.tolist(), values=record.vector.values.tolist()
                )
            }
            if record.dense is not None:
                vector[self.dense_name] = record.dense.tolist()
            points.append(
                construct_point(
                    id=point_id(record.document.id),
                    vector=vector,
                    payload=stored_payload(record.document) | run,
                )
            )
        return points

    def write(self, records: Sequence[Record]) -> WriteStats:
        """Upsert records and wait until Qdrant applied them.

        A record with a ``version`` (the run number) stores it in the payload field ``run`` and is
        sent with an update filter (``run`` < version, or no ``run`` yet): a point already written
        with the same or a newer version is left as it is. Qdrant does not say which points the
        filter skipped, so ``WriteStats.stale`` stays 0 here. Concurrent calls are safe; on embedded
        Qdrant they run one at a time and the storage is synced before the call returns.
        """
        check_records(records)
        check_dense_slots(records, size=self.dense_size, slot=f"the collection's {self.dense_name!r} vector")
        if self.target.path is not None:
            with self._local_writes:
                return self._durably(lambda: self._write(records))
        return self._write(records)

    def _durably(self, fn: Callable[[], T]) -> T:
        """Run a local-mode change with per-point fsyncs deferred, then sync once (lock held)."""
        storage = _local_storage(self.client, self.target.collection)
        if storage is None:
            return fn()
        if storage is not self._deferred:
            if not _defer_sync(storage):
                logger.debug("embedded Qdrant storage is not in WAL mode; per-point commits stay")
                return fn()
            self._deferred = storage
        try:
            return fn()
        finally:
            _checkpoint(storage)

    def _write(self, records: Sequence[Record]) -> WriteStats:
        for start in range(0, len(records), self.batch_size):
            batch = records[start : start + self.batch_size]
            for version in dict.fromkeys(r.version for r in batch):
                self._call(
                    "upsert",
                    self.client.upsert,
                    self.target.collection,
                    points=self._points([r for r in batch if r.version == version], version),
                    wait=True,
                    update_filter=None if version is None else _older_than(version),
                )
        return WriteStats(written=len(records))

    def delete(self, document_ids: Sequence[str]) -> None:
        if isinstance(document_ids, str):
            raise TypeError("pass a list of document ids, not a single string")
        if not document_ids:
            return
        models = _qdrant().models
        selector = models.PointIdsList(points=[point_id(i) for i in document_ids])
        if self.target.path is not None:
            with self._local_writes:
                self._durably(lambda: self._delete(selector))
        else:
            self._delete(selector)

    def _delete(self, selector: Any) -> None:
        self._call("delete", self.client.delete, self.target.collection, points_selector=selector, wait=True)

    def search(self, query: SparseVector, *, k: int = 10) -> list[SearchHit]:
        [hits] = self.search_batch([query], k=k)
        return hits

    def search_batch(self, queries: Sequence[SparseVector], *, k: int = 10) -> list[list[SearchHit]]:
        """Top-``k`` hits for each sparse query, in one ``query_batch_points`` round trip."""
        for query in queries:
            check_query(query)
        check_k(k)
        requests = [sparse_request(q, using=self.vector_name, limit=k) for q in queries if len(q)]
        answers = iter(self._batch("search", requests))
        return [next(answers) if len(q) else [] for q in queries]

    def search_dense_batch(
        self, queries: Sequence[npt.NDArray[np.float32]], *, k: int = 10
    ) -> list[list[SearchHit]]:
        """Top-``k`` hits for each dense query by cosine similarity, in one round trip."""
        check_k(k)
        checked = self._require_dense(queries)
        return self._batch(
            "dense search", [dense_request(q, using=self.dense_name, limit=k) for q in checked]
        )

    def search_hybrid_batch(
        self, queries: Sequence[HybridQuery], fusion: Fusion, *, k: int = 10
    ) -> list[list[SearchHit]]:
        """Fused top-``k`` hits for each hybrid query, in one ``query_batch_points`` round trip.

        Fusions Qdrant computes exactly as :mod:`sparsebridge.query.fusion` defines them run
        server-side (see :mod:`sparsebridge.backends.qdrant.bodies`): Qdrant returns the whole fused candidate
        list (at most ``candidates`` per leg), which is re-sorted with our tie-break (score, then
        document id) and cut to ``k``, so the result equals client-side fusion of the same legs.
        The other fusions fetch every leg in the same single round trip and fuse client-side.

        Raises:
            ValueError: A query has a BM25 leg, or the weights do not match the legs.
        """
        check_k(k)
        self._require_dense([q.dense for q in queries if q.dense is not None])
        plan = plan_hybrid(queries, fusion, k=k, sparse_name=self.vector_name, dense_name=self.dense_name)
        return plan.finish(self._batch("hybrid search", plan.requests))

    def _require_dense(self, vectors: Sequence[object]) -> list[npt.NDArray[np.float32]]:
        slot = f"the collection's {self.dense_name!r} vector"
        return check_dense_queries(vectors, size=self.dense_size, slot=slot)

    def _batch(self, what: str, requests: list[Any]) -> list[list[SearchHit]]:
        if not requests:
            return []
        try:
            responses = self._call(what, self.client.query_batch_points, self.target.collection, requests)
        except (BackendError, ValueError) as e:  # a server answers 404, local mode raises ValueError
            missing = e.status == 404 if isinstance(e, BackendError) else "not found" in str(e)
            if not missing:
                raise
            raise BackendError(
                f"collection {self.target.collection!r} does not exist (ingest into it first)",
                backend=self.name,
                status=404,
            ) from e
        return [
            [
                SearchHit(
                    id=str((p.payload or {}).get("doc_id", p.id)),
                    score=float(p.score),
                    payload=p.payload or {},
                )
                for p in response.points
            ]
            for response in responses
        ]

    def count(self) -> int:
        return int(self._call("count", self.client.count, self.target.collection, exact=True).count)

    def stored_model(self) -> dict[str, Any] | None:
        """The model identity in the collection's metadata (None: none, or no collection)."""
        try:
            info = self._call("get collection", self.client.get_collection, self.target.collection)
        except (BackendError, ValueError) as e:  # a server answers 404, local mode raises ValueError
            if (e.status == 404) if isinstance(e, BackendError) else "not found" in str(e):
                return None
            raise
        found = (info.config.metadata or {}).get(MODEL_KEY)
        return dict(found) if isinstance(found, dict) else None

    def store_model(self, identity: Mapping[str, Any]) -> None:
        """Record the model identity in the collection's metadata (other metadata keys are kept)."""
        metadata = {MODEL_KEY: dict(identity)}
        self._call(
            "record the model", self.client.update_collection, self.target.collection, metadata=metadata
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
            self._deferred = None

    def __enter__(self) -> QdrantBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
