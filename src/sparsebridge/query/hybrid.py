"""The hybrid query: up to three legs (sparse, dense, BM25 text), each with an explicit candidate limit."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from sparsebridge.types import SparseVector, check_dense

__all__ = ["HybridQuery", "LegKind"]


class LegKind(str, Enum):
    """One retriever of a hybrid query. Legs always come in this order: sparse, dense, bm25."""

    SPARSE = "sparse"
    DENSE = "dense"
    BM25 = "bm25"


@dataclass(frozen=True, eq=False)
class HybridQuery:
    """One hybrid query: the legs present, and how many candidates each leg retrieves.

    Args:
        sparse: The sparse query vector (dot product against the stored sparse vectors).
        dense: The dense query embedding (cosine similarity against the stored dense vectors).
        text: The query text for a BM25 leg (a ``match`` on the ``text`` field), on backends that
            have full-text search (Elasticsearch, OpenSearch, PostgreSQL, a Qdrant Edge shard built
            with ``bm25=True``; not qdrant-client's stores or the memory reference).
        candidates: Hits each leg retrieves before fusion (every backend sets it explicitly).

    Fusion weights are given per leg, in :attr:`legs` order (sparse, dense, bm25; those present).

    Example:
        >>> q = HybridQuery(sparse=SparseVector.from_dict({3: 1.0}), dense=[0.1, 0.2], candidates=50)
        >>> [leg.value for leg in q.legs]
        ['sparse', 'dense']
    """

    sparse: SparseVector | None = None
    dense: npt.NDArray[np.float32] | None = None
    text: str | None = None
    candidates: int = 100

    def __post_init__(self) -> None:
        if self.sparse is not None and not isinstance(self.sparse, SparseVector):
            raise TypeError(f"sparse must be a SparseVector, got {type(self.sparse).__name__}")
        if self.dense is not None:
            object.__setattr__(self, "dense", check_dense(self.dense, what="dense query"))
        if self.text is not None and (not isinstance(self.text, str) or not self.text.strip()):
            raise ValueError("the BM25 query text must be a non-blank string")
        if isinstance(self.candidates, bool) or not isinstance(self.candidates, int) or self.candidates <= 0:
            raise ValueError(f"candidates must be a positive integer, got {self.candidates!r}")
        if len(self.legs) < 1:
            raise ValueError("a hybrid query needs at least one leg (sparse, dense or text)")

    @property
    def legs(self) -> tuple[LegKind, ...]:
        """The legs present, in fusion order."""
        present = (
            (LegKind.SPARSE, self.sparse is not None),
            (LegKind.DENSE, self.dense is not None),
            (LegKind.BM25, self.text is not None),
        )
        return tuple(kind for kind, there in present if there)
