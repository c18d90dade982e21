"""Qdrant sparse collections: embedded local mode (the default) or a server.

The collection holds one named sparse vector (``splade`` by default), with the IDF modifier off
(SPLADE weights already encode importance; turn it on for BM25-like vectors), and optionally a
named dense vector slot. Point ids are UUIDv5 of the user's document id, so rewrites are
idempotent; the original id, the text and the metadata are kept in the payload.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparsebridge.backends.base import Record, WriteStats, point_id, stored_payload
from sparsebridge.backends.retry import RetryPolicy, call_with_retry
from sparsebridge.backends.validation import check_dense_slots, check_k, check_query, check_records
from sparsebridge.errors import BackendError, MissingExtraError, SchemaMismatchError
from sparsebridge.types import SearchHit, SparseVector

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from sparsebridge.query.fusion import Fusion
    from sparsebridge.query.hybrid import HybridQuery

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

__all__ = ["QdrantBackend", "QdrantTarget"]

_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
_TRANSIENT_STATUS = frozenset({429, 502, 503, 504})


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
    try:
        import qdrant_client
    except ImportError as e:
        raise MissingExtraError("qdrant-client", "qdrant") from e
    return qdrant_client


def _is_transient(error: BaseException) -> bool:
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(error, UnexpectedResponse):
        return error.status_code in _TRANSIENT_STATUS
    return isinstance(error, (ResponseHandlingException, ConnectionError, TimeoutError))


def _older_than(version: int) -> Any:
    """The update filter of a versioned write: points without a run number, or with an older one."""
    models = _qdrant().models
    return models.Filter(
        should=[
            models.FieldCondition(key="run", range=models.Range(lt=version)),
            models.IsEmptyCondition(is_empty=models.PayloadField(key="run")),
        ]
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
        if not vector_name or not dense_name or vector_name == dense_name:
            raise ValueError("vector_name and dense_name must be distinct non-empty names")
        if dense_size is not None and dense_size <= 0:
            raise ValueError("dense_size must be positive")
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
        from qdrant_client.http.exceptions import UnexpectedResponse

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

    def _point_vectors(self, record: Record) -> dict[str, Any]:
        models = _qdrant().models
        vectors: dict[str, Any] = {
            self.vector_name: models.SparseVector(
                indices=record.vector.indices.tolist(), values=record.vector.values.tolist()
            )
        }
        if record.dense is not None:
            vectors[self.dense_name] = record.dense.tolist()
        return vectors

    def write(self, records: Sequence[Record]) -> WriteStats:
        """Upsert records and wait until Qdrant applied them.

        A record with a ``version`` (the run number) stores it in the payload field ``run`` and is
        sent with an update filter (``run`` < version, or no ``run`` yet): a point already written
        with the same or a newer version is left as it is. Qdrant does not say which points the
        filter skipped, so ``WriteStats.stale`` stays 0 here. Concurrent calls are safe; on embedded
        Qdrant they run one at a time.
        """
        check_records(records)
        check_dense_slots(records, size=self.dense_size, slot=f"the collection's {self.dense_name!r} vector")
        if self.target.path is not None:
            with self._local_writes:
                return self._write(records)
        return self._write(records)

    def _write(self, records: Sequence[Record]) -> WriteStats:
        models = _qdrant().models
        for start in range(0, len(records), self.batch_size):
            batch = records[start : start + self.batch_size]
            for version in dict.fromkeys(r.version for r in batch):
                points = [
                    models.PointStruct(
                        id=point_id(r.document.id),
                        vector=self._point_vectors(r),
                        payload=stored_payload(r.document) | ({} if version is None else {"run": version}),
                    )
                    for r in batch
                    if r.version == version
                ]
                self._call(
                    "upsert",
                    self.client.upsert,
                    self.target.collection,
                    points=points,
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
        self._call("delete", self.client.delete, self.target.collection, points_selector=selector, wait=True)

    def search(self, query: SparseVector, *, k: int = 10) -> list[SearchHit]:
        [hits] = self.search_batch([query], k=k)
        return hits

    def search_batch(self, queries: Sequence[SparseVector], *, k: int = 10) -> list[list[SearchHit]]:
        """Top-``k`` hits for each sparse query, in one ``query_batch_points`` round trip."""
        from sparsebridge.query.qdrant import sparse_request

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
        from sparsebridge.query.hybrid import check_dense
        from sparsebridge.query.qdrant import dense_request

        check_k(k)
        checked = [check_dense(q, what="dense query") for q in queries]
        self._require_dense(checked)
        return self._batch(
            "dense search", [dense_request(q, using=self.dense_name, limit=k) for q in checked]
        )

    def search_hybrid_batch(
        self, queries: Sequence[HybridQuery], fusion: Fusion, *, k: int = 10
    ) -> list[list[SearchHit]]:
        """Fused top-``k`` hits for each hybrid query, in one ``query_batch_points`` round trip.

        Fusions Qdrant computes exactly as :mod:`sparsebridge.query.fusion` defines them run
        server-side (see :mod:`sparsebridge.query.qdrant`): Qdrant returns the whole fused candidate
        list (at most ``candidates`` per leg), which is re-sorted with our tie-break (score, then
        document id) and cut to ``k``, so the result equals client-side fusion of the same legs.
        The other fusions fetch every leg in the same single round trip and fuse client-side.

        Raises:
            ValueError: A query has a BM25 leg, or the weights do not match the legs.
        """
        from sparsebridge.query.fusion import Fusion, FusionMethod, fuse
        from sparsebridge.query.qdrant import hybrid_request, is_native, leg_requests

        check_k(k)
        self._require_dense([q.dense for q in queries if q.dense is not None])
        if all(is_native(fusion, len(q.legs)) for q in queries):
            requests = [
                hybrid_request(
                    q,
                    fusion,
                    limit=q.candidates * len(q.legs),  # the whole fused list: ties re-sorted here
                    sparse_name=self.vector_name,
                    dense_name=self.dense_name,
                )
                for q in queries
            ]
            answers = self._batch("hybrid search", requests)
            resort = Fusion(FusionMethod.SUM)  # one leg, weight 1: the same scores, our tie-break
            return [fuse([hits], resort, limit=k) for hits in answers]
        requests, spans = [], []
        for query in queries:
            legs = leg_requests(query, sparse_name=self.vector_name, dense_name=self.dense_name)
            spans.append((len(requests), len(legs)))
            requests.extend(legs)
        answers = self._batch("hybrid legs", requests)
        return [fuse(answers[start : start + n], fusion, limit=k) for start, n in spans]

    def _require_dense(self, vectors: Sequence[npt.NDArray[np.float32]]) -> None:
        for vector in vectors:
            if self.dense_size is None:
                raise ValueError("this backend has no dense vector: open it with dense_size=<dimension>")
            if vector.shape[0] != self.dense_size:
                raise ValueError(
                    f"dense query is {vector.shape[0]}-d; the collection's is {self.dense_size}-d"
                )

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

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
