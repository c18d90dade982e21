"""The optional dense leg: any sentence-transformers ``SentenceTransformer``, as float32 arrays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from sparsebridge.errors import ModelLoadError

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

__all__ = ["DenseEncoder"]


class DenseEncoder:
    """Encode texts into L2-normalised float32 embeddings with a ``SentenceTransformer``.

    Queries and documents go through the model's own ``encode_query`` / ``encode_document`` (its
    prompts, if it defines any). Embeddings are normalised, so cosine similarity is a dot product.

    Example:
        >>> dense = DenseEncoder.load("minilm", device="cpu")  # doctest: +SKIP
        >>> dense.encode_documents(["a text"]).shape  # doctest: +SKIP
        (1, 384)
    """

    def __init__(self, model: SentenceTransformer, *, batch_size: int = 64) -> None:
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self.model = model
        self.batch_size = batch_size

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        *,
        device: str | torch.device | None = None,
        trust_remote_code: bool = False,
        **options: Any,
    ) -> DenseEncoder:
        """Load a ``SentenceTransformer`` by hub name, local path or bundled short name (``minilm``).

        Args:
            model_name_or_path: Hub name, local directory, or ``minilm`` (all-MiniLM-L6-v2, 384-d).
            device: Where to run; pass the sparse :class:`~sparsebridge.encoder.Encoder`'s ``device``
                to share it. Defaults to CUDA when present, else CPU.
            trust_remote_code: Passed to transformers.
            **options: Keyword options of :class:`DenseEncoder` (``batch_size``).

        Raises:
            ModelLoadError: The model cannot be found or loaded.
        """
        import torch
        from sentence_transformers import SentenceTransformer

        from sparsebridge.encoder.models import resolve_model

        path = resolve_model(model_name_or_path)
        device = str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            model = SentenceTransformer(path, device=device, trust_remote_code=trust_remote_code)
        except Exception as e:  # transformers raises OSError, ValueError, HF errors...
            raise ModelLoadError(f"cannot load dense model {model_name_or_path!r}: {e}") from e
        model.eval()
        return cls(model, **options)

    @property
    def dimension(self) -> int:
        """The embedding dimension."""
        getter = getattr(self.model, "get_embedding_dimension", None)  # sentence-transformers >= 6
        size = getter() if getter is not None else self.model.get_sentence_embedding_dimension()
        if size is None:
            raise ModelLoadError("the dense model does not report its embedding dimension")
        return int(size)

    def encode_documents(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Document embeddings, shape ``[len(texts), dimension]``."""
        return self._encode(texts, self.model.encode_document)

    def encode_queries(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Query embeddings, shape ``[len(texts), dimension]``."""
        return self._encode(texts, self.model.encode_query)

    def _encode(self, texts: Sequence[str], encode: Any) -> npt.NDArray[np.float32]:
        if isinstance(texts, str):
            raise TypeError("pass a list of texts, not a single string")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        embeddings = encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(embeddings, dtype=np.float32)
