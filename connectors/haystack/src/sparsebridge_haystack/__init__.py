"""sparsebridge for Haystack: sparse embedder components and a retriever component over any backend."""

from sparsebridge_haystack.embedders import (
    SparsebridgeSparseDocumentEmbedder,
    SparsebridgeSparseTextEmbedder,
    to_sparse_embedding,
)
from sparsebridge_haystack.retriever import SparsebridgeRetriever, to_document

__all__ = [
    "SparsebridgeRetriever",
    "SparsebridgeSparseDocumentEmbedder",
    "SparsebridgeSparseTextEmbedder",
    "to_document",
    "to_sparse_embedding",
]
