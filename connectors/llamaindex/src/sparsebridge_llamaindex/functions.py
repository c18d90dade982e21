"""LlamaIndex's sparse and fusion callables, computed by sparsebridge."""

from __future__ import annotations

from typing import Any

from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.types import VectorStoreQueryResult
from llama_index.vector_stores.qdrant.utils import (
    BatchSparseEncoding,
    HybridFusionCallable,
    SparseEncoderCallable,
)

from sparsebridge import Encoder, Fusion, SearchHit, SparseVector
from sparsebridge.query import fuse

__all__ = ["hybrid_fusion_fn", "sparse_doc_fn", "sparse_query_fn"]


def _batch(vectors: list[SparseVector]) -> BatchSparseEncoding:
    return [v.indices.tolist() for v in vectors], [v.values.tolist() for v in vectors]


def _check(encoder: Encoder) -> None:
    if not isinstance(encoder, Encoder):
        raise TypeError(f"encoder must be a sparsebridge Encoder, got {type(encoder).__name__}")


def sparse_doc_fn(encoder: Encoder) -> SparseEncoderCallable:
    """``sparse_doc_fn`` for LlamaIndex's ``QdrantVectorStore``: one batched ``encode_documents`` call.

    Example:
        >>> fn = sparse_doc_fn(Encoder.load("splade-tiny"))  # doctest: +SKIP
        >>> indices, values = fn(["Mars is red", "Bread rises"])  # doctest: +SKIP
    """
    _check(encoder)

    def encode(texts: list[str]) -> BatchSparseEncoding:
        return _batch(encoder.encode_documents(texts))

    return encode


def sparse_query_fn(encoder: Encoder) -> SparseEncoderCallable:
    """``sparse_query_fn`` for LlamaIndex's ``QdrantVectorStore``: ``encode_queries`` (the query path)."""
    _check(encoder)

    def encode(texts: list[str]) -> BatchSparseEncoding:
        return _batch(encoder.encode_queries(texts))

    return encode


def hybrid_fusion_fn(fusion: Fusion | None = None) -> HybridFusionCallable:
    """``hybrid_fusion_fn`` for LlamaIndex's ``QdrantVectorStore``: sparsebridge's fusion of the two legs.

    The legs are fused in sparsebridge's leg order (sparse, dense), with the definitions of
    :mod:`sparsebridge.query.fusion` (default RRF, k = 60), so a hybrid LlamaIndex query ranks as
    sparsebridge's own hybrid search does. LlamaIndex's ``alpha`` is not used: give leg weights in
    ``fusion``.
    """
    fusion = Fusion() if fusion is None else fusion
    if not isinstance(fusion, Fusion):
        raise TypeError(f"fusion must be a sparsebridge Fusion, got {type(fusion).__name__}")

    def fuse_results(
        dense_result: VectorStoreQueryResult, sparse_result: VectorStoreQueryResult, **kwargs: Any
    ) -> VectorStoreQueryResult:
        nodes: dict[str, BaseNode] = {}
        legs = []
        for result in (sparse_result, dense_result):
            ids, scores = result.ids or [], result.similarities or []
            if len(ids) != len(scores) or len(ids) != len(result.nodes or []):
                raise ValueError("a LlamaIndex query result has different numbers of ids, scores and nodes")
            nodes.update(zip(ids, result.nodes or [], strict=True))
            legs.append([SearchHit(id=i, score=s) for i, s in zip(ids, scores, strict=True)])
        fused = fuse(legs, fusion, limit=kwargs.get("top_k"))
        return VectorStoreQueryResult(
            nodes=[nodes[h.id] for h in fused],
            similarities=[h.score for h in fused],
            ids=[h.id for h in fused],
        )

    return fuse_results
