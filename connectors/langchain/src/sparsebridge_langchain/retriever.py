"""A LangChain retriever over any sparsebridge backend."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import Field, PrivateAttr, model_validator

from sparsebridge import Backend, DenseEncoder, Encoder, Fusion, SearchHit
from sparsebridge.search import Searcher, SearchMode, hit_text

__all__ = ["SparsebridgeRetriever", "to_document"]


def to_document(hit: SearchHit) -> Document:
    """A LangChain ``Document``: ``id`` and ``metadata["doc_id"]`` = the document id, ``page_content``
    = its text, ``metadata`` = its metadata plus ``doc_id`` and ``score`` (these two keys win over
    stored metadata keys of the same name)."""
    metadata = dict(hit.payload.get("metadata") or {})
    metadata.update(doc_id=hit.id, score=hit.score)
    return Document(id=hit.id, page_content=hit_text(hit), metadata=metadata)


class SparsebridgeRetriever(BaseRetriever):
    """Retrieve from any sparsebridge backend: Qdrant, Qdrant Edge, OpenSearch, Elasticsearch, memory.

    Modes: ``sparse`` (SPLADE), ``hybrid`` (SPLADE fused with a dense leg and/or BM25, fused by
    the backend as sparsebridge defines each fusion) and ``bm25`` (the engine's full-text search;
    OpenSearch and Elasticsearch). Queries are encoded by ``encoder.encode_queries``; ``batch``
    runs one encoder call per input, like ``invoke``.

    Args:
        backend: A sparsebridge backend (``sparsebridge.open_backend(uri)``).
        encoder: The sparse encoder (not needed in ``bm25`` mode).
        mode: ``sparse``, ``hybrid`` or ``bm25``.
        k: Documents per query.
        dense_encoder: Hybrid: adds a dense leg.
        bm25: Hybrid: adds the backend's BM25 leg.
        fusion: Hybrid: the fusion (default RRF, k = 60).
        candidates: Hybrid: hits per leg before fusion.

    Example:
        >>> from sparsebridge import Encoder, open_backend
        >>> retriever = SparsebridgeRetriever(
        ...     backend=open_backend("qdrant+local://./data/docs"), encoder=Encoder.load("splade-tiny")
        ... )  # doctest: +SKIP
        >>> retriever.invoke("which planet is red")[0].metadata["doc_id"]  # doctest: +SKIP
        'mars'
    """

    backend: Backend
    encoder: Encoder | None = None
    mode: SearchMode = SearchMode.SPARSE
    k: int = Field(default=4, gt=0)
    dense_encoder: DenseEncoder | None = None
    bm25: bool = False
    fusion: Fusion = Field(default_factory=Fusion)
    candidates: int = Field(default=100, gt=0)
    _searcher: Searcher = PrivateAttr()

    @model_validator(mode="after")
    def _build_searcher(self) -> SparsebridgeRetriever:
        self._searcher = Searcher(
            self.backend,
            self.encoder,
            self.mode,
            dense_encoder=self.dense_encoder,
            bm25=self.bm25,
            fusion=self.fusion,
            candidates=self.candidates,
        )
        return self

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        k = kwargs.get("k", self.k)
        [hits] = self._searcher.search([query], k=k)
        return [to_document(hit) for hit in hits]
