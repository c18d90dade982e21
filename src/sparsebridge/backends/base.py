"""The sink protocol every backend implements, and the record it writes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt

from sparsebridge.backends.targets import Target
from sparsebridge.query.fusion import Fusion
from sparsebridge.query.hybrid import HybridQuery
from sparsebridge.types import Document, SearchHit, SparseVector, WriteStats, check_dense

__all__ = [
    "Backend",
    "Located",
    "Record",
    "SupportsBatchSearch",
    "SupportsDenseSearch",
    "SupportsHybridSearch",
    "SupportsOptimize",
    "SupportsTextSearch",
    "WriteStats",
    "has_text_leg",
    "point_id",
    "stored_payload",
]

# Fixed namespace: the same document id gives the same point id in every run and on every machine.
_ID_NAMESPACE = uuid.UUID("6f0c7a52-3c1e-4b8e-9a4e-2f6d1b7c9e10")


def point_id(document_id: str) -> str:
    """Deterministic UUID for a user's document id (the original id is kept in the payload)."""
    return str(uuid.uuid5(_ID_NAMESPACE, document_id))


@dataclass(frozen=True, eq=False)
class Record:
    """A document, its sparse vector and optionally its dense embedding, ready to be written.

    ``dense`` (optional) is stored as a read-only 1-D finite float32 array; the backend checks its
    dimension against its schema before any network call. A record without ``dense`` is found by
    the sparse leg only.

    ``version`` (optional) is the run number of the write: a positive integer that only grows from
    run to run. A backend then never lets it overwrite a copy written with the same or a higher
    version (external versioning on OpenSearch/Elasticsearch, an update filter on Qdrant): such an
    item is counted in :attr:`WriteStats.stale` instead.
    """

    document: Document
    vector: SparseVector
    dense: npt.NDArray[np.float32] | None = None
    version: int | None = None

    def __post_init__(self) -> None:
        if self.version is not None and (
            isinstance(self.version, bool) or not isinstance(self.version, int) or self.version <= 0
        ):
            raise ValueError(f"version must be a positive integer, got {self.version!r}")
        if self.dense is not None:
            dense = check_dense(self.dense, what=f"dense vector of document {self.document.id!r}")
            object.__setattr__(self, "dense", dense)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        if self.dense is None or other.dense is None:
            same_dense = self.dense is None and other.dense is None
        else:
            same_dense = bool(np.array_equal(self.dense, other.dense))
        return self.document == other.document and self.vector == other.vector and same_dense

    __hash__ = None  # type: ignore[assignment]  # unhashable: documents hold dicts


def stored_payload(document: Document) -> dict[str, Any]:
    """The payload stored next to each vector: ``{"doc_id", "text", "metadata"}``."""
    return {"doc_id": document.id, "text": document.text, "metadata": dict(document.metadata)}


@runtime_checkable
class Backend(Protocol):
    """A place sparse vectors are written to and searched in.

    Every backend of this package is also a context manager (``with open_backend(uri) as b:``
    closes it when the block ends).

    Writes are upserts keyed by the document id, so rewriting the same ids is idempotent.
    Implementations validate everything they can before any network call.
    """

    name: str

    def ensure_schema(self) -> None:
        """Create the collection/index, or check that the existing one matches; raise otherwise."""
        ...

    def write(self, records: Sequence[Record]) -> WriteStats:
        """Upsert records; returns once the engine acknowledged all of them.

        Transient failures are retried (only the failed items); items that fail permanently raise
        :class:`~sparsebridge.errors.BulkWriteError` listing them, after every other item was
        written.
        """
        ...

    def delete(self, document_ids: Sequence[str]) -> None:
        """Delete documents by their ids (missing ids are ignored)."""
        ...

    def search(self, query: SparseVector, *, k: int = 10) -> list[SearchHit]:
        """Top-``k`` documents by dot product with ``query``, best first."""
        ...

    def count(self) -> int:
        """Number of stored documents."""
        ...

    def close(self) -> None:
        """Release clients and locks."""
        ...

    def __enter__(self) -> Self:
        """The backend itself."""
        ...

    def __exit__(self, *exc: object) -> None:
        """:meth:`close`."""
        ...


@runtime_checkable
class Located(Protocol):
    """A backend that keeps the parsed target it writes to as ``location`` (a backend built without
    a URI builds it from its own configuration)."""

    location: Target


# Optional capabilities: a backend implements those it can; callers check with isinstance().


@runtime_checkable
class SupportsBatchSearch(Protocol):
    """Many sparse queries per round trip."""

    def search_batch(self, queries: Sequence[SparseVector], *, k: int = 10) -> list[list[SearchHit]]:
        """Top-``k`` hits for each query, best first."""
        ...


@runtime_checkable
class SupportsDenseSearch(Protocol):
    """A dense (cosine similarity) leg over the stored dense vectors."""

    def search_dense_batch(
        self, queries: Sequence[npt.NDArray[np.float32]], *, k: int = 10
    ) -> list[list[SearchHit]]:
        """Top-``k`` hits by cosine similarity for each dense query, best first."""
        ...


@runtime_checkable
class SupportsTextSearch(Protocol):
    """A BM25 leg: full-text ``match`` on the stored ``text`` field."""

    def search_text_batch(self, queries: Sequence[str], *, k: int = 10) -> list[list[SearchHit]]:
        """Top-``k`` hits by BM25 for each query text, best first."""
        ...


def has_text_leg(backend: object) -> bool:
    """Whether ``backend`` can answer a BM25 leg: it has text search and, where that depends on how
    its collection was built (a Qdrant Edge shard's text index), it has the index or was opened to
    build it (its ``has_text_leg()``)."""
    if not isinstance(backend, SupportsTextSearch):
        return False
    built = getattr(backend, "has_text_leg", None)
    return bool(built()) if callable(built) else True


@runtime_checkable
class SupportsHybridSearch(Protocol):
    """Fused hybrid queries (native where the engine computes our definition, else client-side)."""

    def search_hybrid_batch(
        self, queries: Sequence[HybridQuery], fusion: Fusion, *, k: int = 10
    ) -> list[list[SearchHit]]:
        """Fused top-``k`` hits for each hybrid query, best first."""
        ...


@runtime_checkable
class SupportsOptimize(Protocol):
    """Storage that can be compacted after a bulk load (Qdrant Edge's segments)."""

    def optimize(self) -> bool:
        """Merge and index the stored segments; True if anything changed, False if already optimal."""
        ...
