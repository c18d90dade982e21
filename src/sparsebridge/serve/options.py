"""The service's options: limits, the embedding task, the API key. Validated here, no I/O but a key file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["API_KEY_ENV", "ServeOptions", "read_api_key"]

API_KEY_ENV = "SPARSEBRIDGE_SERVICE_API_KEY"
"""The environment variable that holds the service's API key (kept out of ``ps``, unlike a flag)."""


@dataclass(frozen=True)
class ServeOptions:
    """What one service allows and does.

    Args:
        task: ``"query"`` (default) or ``"document"``: the model path ``/embed_sparse`` encodes with.
            ``/search`` always encodes queries.
        top_k: Keep at most this many dimensions per vector (None: all), as ``--top-k``.
        min_weight: Drop weights ``<= min_weight``, as ``--min-weight``.
        max_inputs: Most texts in one ``/embed_sparse`` request (413 above; 32, as
            text-embeddings-inference's ``max_client_batch_size``).
        max_body_bytes: Largest request body (413 above; 2,000,000, as text-embeddings-inference's
            ``payload_limit``).
        max_queue: Most requests admitted at once, waiting or being answered; one more gets 503
            with ``Retry-After`` before its body is read. Bounds memory: at most ``max_queue``
            bodies of ``max_body_bytes`` are held.
        retry_after: Seconds sent in ``Retry-After`` with a 503.
        max_k: Largest ``k`` of ``/search`` (422 above).
        auto_truncate: What a request without ``truncate`` gets: True truncates long texts to the
            model's maximum length (as ``encode_queries`` does); False answers 413 for them.
        api_key: When set, every endpoint but ``/health`` needs ``Authorization: Bearer <key>``.
            Not shown in the repr.
    """

    task: str = "query"
    top_k: int | None = None
    min_weight: float = 0.0
    max_inputs: int = 32
    max_body_bytes: int = 2_000_000
    max_queue: int = 64
    retry_after: int = 1
    max_k: int = 1000
    auto_truncate: bool = True
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.task not in ("query", "document"):
            raise ValueError(f"task must be 'query' or 'document', got {self.task!r}")
        for name in ("max_inputs", "max_body_bytes", "max_queue", "retry_after", "max_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or self.top_k <= 0):
            raise ValueError(f"top_k must be a positive integer or None, got {self.top_k!r}")
        if not self.min_weight >= 0:
            raise ValueError(f"min_weight must be >= 0, got {self.min_weight!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("the API key is empty")


def read_api_key(path: Path | None) -> str | None:
    """The service's API key: the first line of ``path`` if given, else ``$SPARSEBRIDGE_SERVICE_API_KEY``.

    Raises:
        ValueError: The file or the variable holds an empty key.
    """
    if path is not None:
        key = path.read_text(encoding="utf-8").strip()
        if not key:
            raise ValueError(f"the API key file {path} is empty")
        return key
    value = os.environ.get(API_KEY_ENV)
    if value is None:
        return None
    if not value.strip():
        raise ValueError(f"{API_KEY_ENV} is set but empty")
    return value.strip()
