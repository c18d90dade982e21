"""``langchain_qdrant.QdrantVectorStore`` configured for a collection sparsebridge writes."""

from __future__ import annotations

from langchain_core.embeddings import Embeddings
from langchain_qdrant import QdrantVectorStore, RetrievalMode

from sparsebridge import Encoder, QdrantBackend
from sparsebridge_langchain.embeddings import SparsebridgeSparseEmbeddings

__all__ = ["qdrant_vector_store"]


def qdrant_vector_store(
    backend: QdrantBackend, encoder: Encoder, *, dense_embedding: Embeddings | None = None
) -> QdrantVectorStore:
    """A ``QdrantVectorStore`` over ``backend``'s collection, reading and writing it as sparsebridge does.

    The collection is created with the backend's schema if it does not exist (``ensure_schema``),
    then the store is set up with the backend's vector names, the ``text`` / ``metadata`` payload
    keys and ``encoder`` for the sparse leg: sparse retrieval, or hybrid (Qdrant's server-side
    fusion) when ``dense_embedding`` is given and the backend has a dense slot (``dense_size``).

    LangChain's store does not know sparsebridge's ``doc_id`` payload key: its documents carry the
    Qdrant point id (``metadata["_id"]``, ``sparsebridge.backends.point_id(doc_id)``), not the
    document id. :class:`~sparsebridge_langchain.SparsebridgeRetriever` returns the document id.

    Args:
        backend: A sparsebridge Qdrant backend (``open_backend("qdrant+local://...")``).
        encoder: The sparse encoder.
        dense_embedding: The dense embeddings of a hybrid collection (e.g.
            :class:`~sparsebridge_langchain.SparsebridgeDenseEmbeddings`).

    Raises:
        ValueError: ``dense_embedding`` is given but the backend has no dense slot.
        SchemaMismatchError: The existing collection does not match the backend's schema.

    Example:
        >>> from sparsebridge import Encoder, open_backend
        >>> backend = open_backend("qdrant+local://./data/docs")
        >>> store = qdrant_vector_store(backend, Encoder.load("splade-tiny"))  # doctest: +SKIP
        >>> store.similarity_search_with_score("which planet is red", k=3)  # doctest: +SKIP
    """
    if not isinstance(backend, QdrantBackend):
        raise TypeError(f"backend must be a sparsebridge QdrantBackend, got {type(backend).__name__}")
    if dense_embedding is not None and backend.dense_size is None:
        raise ValueError("dense_embedding needs a backend with a dense slot: open it with dense_size=...")
    sparse = SparsebridgeSparseEmbeddings(encoder)
    backend.ensure_schema()
    return QdrantVectorStore(
        client=backend.client,
        collection_name=backend.target.collection,
        embedding=dense_embedding,
        retrieval_mode=RetrievalMode.SPARSE if dense_embedding is None else RetrievalMode.HYBRID,
        vector_name=backend.dense_name,
        sparse_embedding=sparse,
        sparse_vector_name=backend.vector_name,
        content_payload_key="text",
        metadata_payload_key="metadata",
    )
