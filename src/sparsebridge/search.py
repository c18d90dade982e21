"""Text queries to hits: encode with the library's encoders, search through any backend.

One searcher serves every integration that starts from query texts (the pipeline connectors
build on it).

Modes: ``sparse`` (the SPLADE leg), ``hybrid`` (the SPLADE leg fused with a dense leg and/or the
backend's BM25 leg, by the backend's ``search_hybrid_batch``) and ``bm25`` (the backend's
full-text leg alone, on OpenSearch, Elasticsearch, PostgreSQL and Qdrant Edge shards built with
``bm25=True``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt

from sparsebridge.backends import Backend, SupportsBatchSearch, SupportsHybridSearch, SupportsTextSearch
from sparsebridge.backends.base import has_text_leg
from sparsebridge.encoder import Encoder
from sparsebridge.encoder.dense import DenseEncoder
from sparsebridge.query import Fusion, HybridQuery
from sparsebridge.types import SearchHit, SparseVector

__all__ = ["SearchMode", "Searcher", "check_queries", "check_setup", "hit_text"]


class SearchMode(str, Enum):
    """Which legs a query runs."""

    SPARSE = "sparse"
    HYBRID = "hybrid"
    BM25 = "bm25"


@dataclass(frozen=True)
class Searcher:
    """Run text queries against a backend in one mode (validated here, before any I/O).

    Args:
        backend: Any sparsebridge backend (``sparsebridge.open_backend(uri)``).
        encoder: The sparse encoder; queries go through its query path. Not used in ``bm25`` mode.
        mode: Which legs run.
        dense_encoder: ``hybrid`` only: adds a dense leg (the backend needs its dense slot).
        bm25: ``hybrid`` only: adds the backend's full-text leg (OpenSearch, Elasticsearch,
            PostgreSQL, a Qdrant Edge shard built with ``bm25=True``).
        fusion: ``hybrid`` only: how the legs are fused (default RRF, k = 60).
        candidates: ``hybrid`` only: hits each leg retrieves before fusion.
    """

    backend: Backend
    encoder: Encoder | None = None
    mode: SearchMode = SearchMode.SPARSE
    dense_encoder: DenseEncoder | None = None
    bm25: bool = False
    fusion: Fusion = field(default_factory=Fusion)
    candidates: int = 100

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", SearchMode(self.mode))
        if self.mode is not SearchMode.BM25 and not isinstance(self.encoder, Encoder):
            raise ValueError(f"{self.mode.value} mode needs a sparsebridge Encoder (encoder=...)")
        if self.dense_encoder is not None and not isinstance(self.dense_encoder, DenseEncoder):
            raise TypeError(f"dense_encoder must be a DenseEncoder, got {type(self.dense_encoder).__name__}")
        check_setup(
            self.backend,
            self.mode,
            dense=self.dense_encoder is not None,
            bm25=self.bm25,
            fusion=self.fusion,
            candidates=self.candidates,
        )

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        """The sparse query vectors of ``texts`` (the encoder's query path)."""
        if self.encoder is None:
            raise ValueError("bm25 mode has no sparse query vector")
        return self.encoder.encode_queries(check_queries(texts))

    def search(
        self,
        texts: Sequence[str],
        *,
        k: int,
        sparse: Sequence[SparseVector] | None = None,
        dense: Sequence[npt.NDArray[np.float32]] | None = None,
    ) -> list[list[SearchHit]]:
        """Top-``k`` hits for each query text, best first.

        Args:
            texts: The query texts.
            k: Hits per query.
            sparse: Precomputed sparse query vectors, one per text (else encoded here).
            dense: Precomputed dense query embeddings, one per text (hybrid with a dense leg).
        """
        texts = check_queries(texts)
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        for name, given in (("sparse", sparse), ("dense", dense)):
            if given is not None and len(given) != len(texts):
                raise ValueError(f"{len(given)} {name} query vectors for {len(texts)} queries")
        if self.mode is SearchMode.BM25:
            assert isinstance(self.backend, SupportsTextSearch)
            return self.backend.search_text_batch(texts, k=k)
        vectors = list(sparse) if sparse is not None else self.encode_queries(texts)
        if self.mode is SearchMode.SPARSE:
            if isinstance(self.backend, SupportsBatchSearch):
                return self.backend.search_batch(vectors, k=k)
            return [self.backend.search(vector, k=k) for vector in vectors]
        queries = self.hybrid_queries(texts, vectors, dense)
        assert isinstance(self.backend, SupportsHybridSearch)
        return self.backend.search_hybrid_batch(queries, self.fusion, k=k)

    def hybrid_queries(
        self,
        texts: Sequence[str],
        sparse: Sequence[SparseVector],
        dense: Sequence[npt.NDArray[np.float32]] | None = None,
    ) -> list[HybridQuery]:
        """The hybrid query of each text: its sparse vector, its dense embedding when this searcher
        has a dense leg (``dense``, else encoded here), its text when it has the BM25 leg."""
        embeddings: Sequence[Any] = [None] * len(texts)
        if dense is not None:
            embeddings = dense
        elif self.dense_encoder is not None:
            embeddings = list(self.dense_encoder.encode_queries(list(texts)))
        return [
            HybridQuery(
                sparse=vector, dense=embedding, text=text if self.bm25 else None, candidates=self.candidates
            )
            for text, vector, embedding in zip(texts, sparse, embeddings, strict=True)
        ]


def check_setup(
    backend: Backend, mode: SearchMode, *, dense: bool, bm25: bool, fusion: Fusion, candidates: int
) -> None:
    """Refuse a setup the backend cannot run (no network I/O): the legs a mode takes, what the
    backend has."""
    if not isinstance(backend, Backend):
        raise TypeError(f"backend must be a sparsebridge backend, got {type(backend).__name__}")
    if mode is not SearchMode.HYBRID and (dense or bm25):
        raise ValueError("a dense leg and bm25 add legs to hybrid mode only")
    if mode is SearchMode.HYBRID:
        if not dense and not bm25:
            raise ValueError("hybrid mode needs a second leg: a dense encoder and/or bm25=True")
        if not isinstance(backend, SupportsHybridSearch):
            raise ValueError(f"the {backend.name} backend has no hybrid search")
    if (mode is SearchMode.BM25 or bm25) and not has_text_leg(backend):
        if isinstance(backend, SupportsTextSearch):  # the leg depends on how the collection was built
            raise ValueError(
                f"the {backend.name} backend's collection has no BM25 text index: ingest into it with "
                "--bm25 (bm25=True), which builds the index"
            )
        raise ValueError(f"the {backend.name} backend has no BM25 text search")
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates <= 0:
        raise ValueError(f"candidates must be a positive integer, got {candidates!r}")
    if not isinstance(fusion, Fusion):
        raise TypeError(f"fusion must be a sparsebridge Fusion, got {type(fusion).__name__}")


def check_queries(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list; each must be a non-blank string."""
    if isinstance(texts, str):
        raise TypeError("pass a list of query texts, not a single string")
    texts = list(texts)
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"a query must be a non-blank string, got {text!r}")
    return texts


def hit_text(hit: SearchHit) -> str:
    """The stored text of a hit (``payload["text"]``, as sparsebridge writes it)."""
    text = hit.payload.get("text")
    if not isinstance(text, str):
        raise ValueError(
            f"hit {hit.id!r} has no stored text (payload keys: {sorted(hit.payload)}); "
            "was the collection written by sparsebridge?"
        )
    return text
