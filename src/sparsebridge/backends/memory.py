"""The exact in-memory reference backend: float64 dot products over every stored vector."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sparsebridge.backends.base import Record, WriteStats, stored_payload
from sparsebridge.backends.validation import check_k, check_query, check_records
from sparsebridge.types import SearchHit, SparseVector

__all__ = ["MemoryBackend"]


class MemoryBackend:
    """Exact reference: what every real backend's results are compared against.

    Ties in score are broken by document id, so the order is fully deterministic.
    """

    name = "memory"

    def __init__(self) -> None:
        self._rows: dict[str, tuple[SparseVector, dict[str, Any]]] = {}

    def ensure_schema(self) -> None:
        return None

    def write(self, records: Sequence[Record]) -> WriteStats:
        check_records(records)
        for record in records:
            self._rows[record.document.id] = (record.vector, stored_payload(record.document))
        return WriteStats(written=len(records))

    def delete(self, document_ids: Sequence[str]) -> None:
        for document_id in document_ids:
            self._rows.pop(document_id, None)

    def search(self, query: SparseVector, *, k: int = 10) -> list[SearchHit]:
        check_query(query)
        check_k(k)
        scored = [
            (vector.dot(query), document_id, payload) for document_id, (vector, payload) in self._rows.items()
        ]
        scored = [row for row in scored if row[0] > 0]
        scored.sort(key=lambda row: (-row[0], row[1]))
        return [SearchHit(id=i, score=s, payload=p) for s, i, p in scored[:k]]

    def count(self) -> int:
        return len(self._rows)

    def close(self) -> None:
        return None
