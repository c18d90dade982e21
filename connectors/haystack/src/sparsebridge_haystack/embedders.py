"""Haystack sparse embedder components whose every vector comes from a sparsebridge encoder."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.dataclasses import SparseEmbedding

from sparsebridge import Encoder, SparseVector

__all__ = ["SparsebridgeSparseDocumentEmbedder", "SparsebridgeSparseTextEmbedder", "to_sparse_embedding"]


def to_sparse_embedding(vector: SparseVector) -> SparseEmbedding:
    """Haystack's ``SparseEmbedding`` of a sparsebridge vector."""
    return SparseEmbedding(indices=vector.indices.tolist(), values=vector.values.tolist())


class _EncoderHolder:
    """The model a component loads in ``warm_up``: a name or path (serializable) or a loaded ``Encoder``."""

    def __init__(self, model: str | Encoder, device: str | None) -> None:
        if isinstance(model, Encoder):
            if device is not None:
                raise ValueError("device applies to a model name or path, not to a loaded Encoder")
            self.encoder: Encoder | None = model
            self.model: str | None = None
        elif isinstance(model, str) and model.strip():
            self.encoder, self.model = None, model
        else:
            raise TypeError(f"model must be a model name or path or a sparsebridge Encoder, got {model!r}")
        self.device = device

    def load(self) -> Encoder:
        if self.encoder is None:
            assert self.model is not None
            self.encoder = Encoder.load(self.model, device=self.device)
        return self.encoder

    def serializable_model(self, component_name: str) -> str:
        if self.model is None:
            raise ValueError(
                f"{component_name} was built from a loaded Encoder and cannot be serialized; "
                "build it from a model name or path"
            )
        return self.model


@component
class SparsebridgeSparseTextEmbedder:
    """Embed a query text with the model's query path (``Encoder.encode_queries``).

    Args:
        model: A model name or path for ``Encoder.load`` (``splade-tiny``, ``naver/splade-v3``...), or
            a loaded ``Encoder`` (then the component does not serialize).
        device: ``cuda``, ``cpu``...; default: CUDA when present.

    Example:
        >>> embedder = SparsebridgeSparseTextEmbedder(model="splade-tiny")
        >>> embedder.run("which planet is red")["sparse_embedding"].indices[:3]  # doctest: +SKIP
        [2003, 2417, 4774]
    """

    def __init__(self, model: str | Encoder = "splade-tiny", device: str | None = None) -> None:
        self._holder = _EncoderHolder(model, device)

    def warm_up(self) -> None:
        """Load the model (once)."""
        self._holder.load()

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self, model=self._holder.serializable_model(type(self).__name__), device=self._holder.device
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SparsebridgeSparseTextEmbedder:
        return default_from_dict(cls, data)

    @component.output_types(sparse_embedding=SparseEmbedding)
    def run(self, text: str) -> dict[str, Any]:
        """The sparse embedding of ``text`` (a non-blank string)."""
        if not isinstance(text, str):
            raise TypeError(
                f"{type(self).__name__} embeds one string; use the document embedder for documents"
            )
        [vector] = self._holder.load().encode_queries([text])
        return {"sparse_embedding": to_sparse_embedding(vector)}


@component
class SparsebridgeSparseDocumentEmbedder:
    """Set ``sparse_embedding`` on documents with the model's document path (``Encoder.encode_documents``).

    All documents of a ``run`` go to the encoder in one call (it batches by tokens itself). The
    documents are returned as new objects; the inputs are not modified.

    Args:
        model: A model name or path for ``Encoder.load``, or a loaded ``Encoder`` (then the component
            does not serialize).
        device: ``cuda``, ``cpu``...; default: CUDA when present.

    Raises:
        ValueError (from ``run``): A document has no text content.
    """

    def __init__(self, model: str | Encoder = "splade-tiny", device: str | None = None) -> None:
        self._holder = _EncoderHolder(model, device)

    def warm_up(self) -> None:
        """Load the model (once)."""
        self._holder.load()

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self, model=self._holder.serializable_model(type(self).__name__), device=self._holder.device
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SparsebridgeSparseDocumentEmbedder:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, Any]:
        """``documents`` with their sparse embeddings."""
        if not isinstance(documents, list) or not all(isinstance(d, Document) for d in documents):
            raise TypeError(f"{type(self).__name__} takes a list of Haystack Documents")
        empty = [d.id for d in documents if not isinstance(d.content, str) or not d.content.strip()]
        if empty:
            raise ValueError(f"documents without text content cannot be embedded: {empty[:5]}")
        vectors = self._holder.load().encode_documents([str(d.content) for d in documents])
        embedded = [
            replace(d, sparse_embedding=to_sparse_embedding(v))
            for d, v in zip(documents, vectors, strict=True)
        ]
        return {"documents": embedded}
