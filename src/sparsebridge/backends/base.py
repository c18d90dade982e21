"""The sink protocol every backend implements, and the record it writes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from sparsebridge.types import Document, SearchHit, SparseVector

__all__ = ["Backend", "Record", "point_id", "stored_payload"]

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

    def write(self, records: Sequence[Record]) -> None:
        """Upsert records; returns once the engine acknowledged all of them."""
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
