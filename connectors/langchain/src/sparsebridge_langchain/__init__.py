"""sparsebridge for LangChain: sparse embeddings, a Qdrant store helper and a retriever over any backend."""

from sparsebridge.search import SearchMode
from sparsebridge_langchain.embeddings import SparsebridgeDenseEmbeddings, SparsebridgeSparseEmbeddings
from sparsebridge_langchain.retriever import SparsebridgeRetriever, to_document
from sparsebridge_langchain.store import qdrant_vector_store

__all__ = [
    "SearchMode",
    "SparsebridgeDenseEmbeddings",
    "SparsebridgeRetriever",
    "SparsebridgeSparseEmbeddings",
    "qdrant_vector_store",
    "to_document",
]
