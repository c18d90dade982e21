"""sparsebridge for LlamaIndex: sparse and fusion callables, a Qdrant store helper, a retriever."""

from sparsebridge.search import SearchMode
from sparsebridge_llamaindex.functions import hybrid_fusion_fn, sparse_doc_fn, sparse_query_fn
from sparsebridge_llamaindex.retriever import SparsebridgeRetriever, SparseQueryBundle, to_node
from sparsebridge_llamaindex.store import qdrant_vector_store

__all__ = [
    "SearchMode",
    "SparseQueryBundle",
    "SparsebridgeRetriever",
    "hybrid_fusion_fn",
    "qdrant_vector_store",
    "sparse_doc_fn",
    "sparse_query_fn",
    "to_node",
]
