"""The sink protocol every backend implements, and the record it writes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from sparsebridge.types import Document, SearchHit, SparseVector

__all__ = ["Backend", "Record", "WriteStats", "point_id", "stored_payload"]

# Fixed namespace: the same document id gives the same point id in every run and on every machine.
_ID_NAMESPACE = uuid.UUID("6f0c7a52-3c1e-4b8e-9a4e-2f6d1b7c9e10")


def point_id(document_id: str) -> str:
    """Deterministic UUID for a user's document id (the original id is kept in the payload)."""
    return str(uuid.uuid5(_ID_NAMESPACE, document_id))


@dataclass(frozen=True)
class Record:
    """A document and its sparse vector, ready to be written."""

    document: Document
    vector: SparseVector


@dataclass
class WriteStats:
    """What one ``write`` call did: items acknowledged, retried item-attempts, stale items.

    ``stale`` counts items the engine refused because it already holds a newer version (a replay
    of an older run under external versioning): not an error, nothing was overwritten.
    """

    written: int = 0
    retries: int = 0
    stale: int = 0

    def add(self, other: WriteStats) -> None:
        self.written += other.written
        self.retries += other.retries
        self.stale += other.stale


def stored_payload(document: Document) -> dict[str, Any]:
    """The payload stored next to each vector: ``{"doc_id", "text", "metadata"}``."""
    return {"doc_id": document.id, "text": document.text, "metadata": dict(document.metadata)}


@runtime_checkable
class Backend(Protocol):
    """A place sparse vectors are written to and searched in.

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
