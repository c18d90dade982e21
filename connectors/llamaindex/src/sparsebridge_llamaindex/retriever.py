"""A LlamaIndex retriever over any sparsebridge backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from llama_index.core.callbacks import CallbackManager
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from sparsebridge import Backend, DenseEncoder, Encoder, Fusion, SearchHit, SparseVector
from sparsebridge.search import Searcher, SearchMode, hit_text

__all__ = ["SparseQueryBundle", "SparsebridgeRetriever", "to_node"]


@dataclass
class SparseQueryBundle(QueryBundle):
    """A ``QueryBundle`` that carries a precomputed sparse query vector (not encoded again).

    ``embedding`` (LlamaIndex's own field) is the precomputed dense query embedding, used by a
    hybrid retriever's dense leg.
    """

    sparse_embedding: SparseVector | None = None


def to_node(hit: SearchHit) -> NodeWithScore:
    """A ``NodeWithScore``: node id = the document id, text, the document's metadata, the score."""
    node = TextNode(id_=hit.id, text=hit_text(hit), metadata=dict(hit.payload.get("metadata") or {}))
    return NodeWithScore(node=node, score=hit.score)


class SparsebridgeRetriever(BaseRetriever):
    """Retrieve from any sparsebridge backend: Qdrant, Qdrant Edge, OpenSearch, Elasticsearch, memory.

    No dense ``embed_model`` is involved unless ``dense_encoder`` adds a dense leg. Modes:
    ``sparse`` (SPLADE), ``hybrid`` (SPLADE fused with a dense leg and/or BM25, fused by the
    backend as sparsebridge defines each fusion) and ``bm25`` (the engine's full-text search;
    OpenSearch and Elasticsearch). Pass a :class:`SparseQueryBundle` to reuse a sparse query
    vector (and ``embedding`` for a dense one) instead of encoding the query again.

    Args:
        backend: A sparsebridge backend (``sparsebridge.open_backend(uri)``).
        encoder: The sparse encoder (not needed in ``bm25`` mode).
        mode: ``sparse``, ``hybrid`` or ``bm25``.
        similarity_top_k: Nodes per query.
        dense_encoder: Hybrid: adds a dense leg.
        bm25: Hybrid: adds the backend's BM25 leg.
        fusion: Hybrid: the fusion (default RRF, k = 60).
        candidates: Hybrid: hits per leg before fusion.
        callback_manager: LlamaIndex's callback manager.

    Example:
        >>> from sparsebridge import Encoder, open_backend
        >>> retriever = SparsebridgeRetriever(
        ...     open_backend("qdrant+local://./data/docs"), Encoder.load("splade-tiny")
        ... )  # doctest: +SKIP
        >>> retriever.retrieve("which planet is red")[0].node.node_id  # doctest: +SKIP
        'mars'
    """

    def __init__(
        self,
        backend: Backend,
        encoder: Encoder | None = None,
        *,
        mode: SearchMode | str = SearchMode.SPARSE,
        similarity_top_k: int = 4,
        dense_encoder: DenseEncoder | None = None,
        bm25: bool = False,
        fusion: Fusion | None = None,
        candidates: int = 100,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        top_k = similarity_top_k
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0:
            raise ValueError(f"similarity_top_k must be a positive integer, got {similarity_top_k!r}")
        self.searcher = Searcher(
            backend,
            encoder,
            SearchMode(mode),
            dense_encoder=dense_encoder,
            bm25=bm25,
            fusion=Fusion() if fusion is None else fusion,
            candidates=candidates,
        )
        self.similarity_top_k = similarity_top_k
        super().__init__(callback_manager=callback_manager)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        options: dict[str, Any] = {}
        sparse = getattr(query_bundle, "sparse_embedding", None)
        if sparse is not None:
            options["sparse"] = [sparse]
        if query_bundle.embedding is not None and self.searcher.dense_encoder is not None:
            options["dense"] = [np.asarray(query_bundle.embedding, dtype=np.float32)]
        [hits] = self.searcher.search([query_bundle.query_str], k=self.similarity_top_k, **options)
        return [to_node(hit) for hit in hits]
