"""LlamaIndex's ``QdrantVectorStore`` configured for a collection sparsebridge writes."""

from __future__ import annotations

from llama_index.vector_stores.qdrant import QdrantVectorStore

from sparsebridge import Encoder, Fusion, QdrantBackend
from sparsebridge_llamaindex.functions import hybrid_fusion_fn, sparse_doc_fn, sparse_query_fn

__all__ = ["qdrant_vector_store"]


def qdrant_vector_store(
    backend: QdrantBackend, encoder: Encoder, *, fusion: Fusion | None = None
) -> QdrantVectorStore:
    """A ``QdrantVectorStore`` over ``backend``'s collection, with sparsebridge's vectors and fusion.

    The collection is created with the backend's schema if it does not exist (``ensure_schema``).
    The store gets the backend's vector names, the ``text`` payload key, ``encoder`` for both
    sparse sides and :func:`~sparsebridge_llamaindex.hybrid_fusion_fn` (``fusion``, default RRF,
    k = 60). Query it with ``mode="sparse"``, or ``mode="hybrid"`` with a dense query embedding
    when the backend has a dense slot. Writing through it needs a dense embedding on every node
    (LlamaIndex always writes the dense vector), so a collection written by LlamaIndex needs a
    backend opened with ``dense_size``.

    LlamaIndex reads sparsebridge's payload as a legacy node: the node id is the Qdrant point id
    (``sparsebridge.backends.point_id(doc_id)``), ``doc_id`` is dropped and the user's metadata
    sits under ``node.metadata["metadata"]``. :class:`~sparsebridge_llamaindex.SparsebridgeRetriever`
    returns nodes keyed by the document id.

    Raises:
        SchemaMismatchError: The existing collection does not match the backend's schema.
    """
    if not isinstance(backend, QdrantBackend):
        raise TypeError(f"backend must be a sparsebridge QdrantBackend, got {type(backend).__name__}")
    doc_fn, query_fn, fuse_fn = sparse_doc_fn(encoder), sparse_query_fn(encoder), hybrid_fusion_fn(fusion)
    backend.ensure_schema()
    return QdrantVectorStore(
        collection_name=backend.target.collection,
        client=backend.client,
        enable_hybrid=True,
        sparse_doc_fn=doc_fn,
        sparse_query_fn=query_fn,
        hybrid_fusion_fn=fuse_fn,
        text_key="text",
        dense_vector_name=backend.dense_name,
        sparse_vector_name=backend.vector_name,
    )
