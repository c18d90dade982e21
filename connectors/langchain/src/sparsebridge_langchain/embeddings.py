"""LangChain embeddings whose every vector comes from a sparsebridge encoder."""

from __future__ import annotations

from langchain_core.embeddings import Embeddings
from langchain_qdrant import SparseEmbeddings
from langchain_qdrant import SparseVector as LangChainSparseVector

from sparsebridge import DenseEncoder, Encoder, SparseVector

__all__ = ["SparsebridgeDenseEmbeddings", "SparsebridgeSparseEmbeddings"]


def _to_langchain(vector: SparseVector) -> LangChainSparseVector:
    return LangChainSparseVector(indices=vector.indices.tolist(), values=vector.values.tolist())


class SparsebridgeSparseEmbeddings(SparseEmbeddings):
    """``langchain_qdrant.SparseEmbeddings`` over :class:`sparsebridge.Encoder`.

    Documents go through ``encode_documents`` and queries through ``encode_queries`` (the model's
    query path, inference-free where the model is), each call one batched encoder call. The async
    variants run the same calls in an executor.

    Args:
        encoder: The sparse encoder.

    Example:
        >>> from sparsebridge import Encoder
        >>> sparse = SparsebridgeSparseEmbeddings(Encoder.load("splade-tiny"))  # doctest: +SKIP
        >>> sparse.embed_query("which planet is red").indices[:3]  # doctest: +SKIP
        [2003, 2417, 4774]
    """

    def __init__(self, encoder: Encoder) -> None:
        if not isinstance(encoder, Encoder):
            raise TypeError(f"encoder must be a sparsebridge Encoder, got {type(encoder).__name__}")
        self.encoder = encoder

    def embed_documents(self, texts: list[str]) -> list[LangChainSparseVector]:
        return [_to_langchain(v) for v in self.encoder.encode_documents(texts)]

    def embed_query(self, text: str) -> LangChainSparseVector:
        [vector] = self.encoder.encode_queries([text])
        return _to_langchain(vector)


class SparsebridgeDenseEmbeddings(Embeddings):
    """LangChain ``Embeddings`` over :class:`sparsebridge.DenseEncoder` (the dense leg of hybrid).

    The same normalised vectors sparsebridge's ``ingest(dense_encoder=...)`` stores, so a
    LangChain query meets documents sparsebridge wrote.

    Args:
        encoder: The dense encoder.
    """

    def __init__(self, encoder: DenseEncoder) -> None:
        if not isinstance(encoder, DenseEncoder):
            raise TypeError(f"encoder must be a sparsebridge DenseEncoder, got {type(encoder).__name__}")
        self.encoder = encoder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [row.tolist() for row in self.encoder.encode_documents(texts)]

    def embed_query(self, text: str) -> list[float]:
        [row] = self.encoder.encode_queries([text])
        return [float(x) for x in row]
