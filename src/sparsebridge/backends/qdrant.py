"""Qdrant sparse collections: embedded local mode (the default) or a server.

The collection holds one named sparse vector (``splade`` by default), with the IDF modifier off
(SPLADE weights already encode importance; turn it on for BM25-like vectors), and optionally a
named dense vector slot. Point ids are UUIDv5 of the user's document id, so rewrites are
idempotent; the original id, the text and the metadata are kept in the payload.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparsebridge.backends.base import Record, WriteStats, point_id, stored_payload
from sparsebridge.backends.retry import RetryPolicy, call_with_retry
from sparsebridge.backends.validation import check_k, check_query, check_records
from sparsebridge.errors import BackendError, MissingExtraError, SchemaMismatchError
from sparsebridge.types import SearchHit, SparseVector

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

    def write(self, records: Sequence[Record]) -> WriteStats:
        check_records(records)
        models = _qdrant().models
        for start in range(0, len(records), self.batch_size):
            batch = records[start : start + self.batch_size]
            points = [
                models.PointStruct(
                    id=point_id(r.document.id),
                    vector={
                        self.vector_name: models.SparseVector(
                            indices=r.vector.indices.tolist(), values=r.vector.values.tolist()
                        )
                    },
                    payload=stored_payload(r.document),
                )
                for r in batch
            ]
            self._call("upsert", self.client.upsert, self.target.collection, points=points, wait=True)
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
        check_query(query)
        check_k(k)
        if len(query) == 0:
            return []
        models = _qdrant().models
        try:
            response = self._call(
                "search",
                self.client.query_points,
                self.target.collection,
                query=models.SparseVector(indices=query.indices.tolist(), values=query.values.tolist()),
                using=self.vector_name,
                limit=k,
                with_payload=True,
            )
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
            SearchHit(
                id=str((p.payload or {}).get("doc_id", p.id)), score=float(p.score), payload=p.payload or {}
            )
            for p in response.points
        ]

    def count(self) -> int:
        return int(self._call("count", self.client.count, self.target.collection, exact=True).count)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
