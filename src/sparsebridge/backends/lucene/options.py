"""The options of an OpenSearch or Elasticsearch backend, declared once; no I/O."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum

from sparsebridge.backends.lucene import bodies
from sparsebridge.backends.retry import RetryPolicy

__all__ = ["LuceneOptions", "Refresh"]


class Refresh(str, Enum):
    """When written documents become searchable: the engines' ``refresh`` parameter of ``_bulk``.

    ``WAIT_FOR`` (default): ``write`` returns once they are searchable (like Qdrant's ``wait=True``).
    ``NONE``: at the next periodic refresh (1 s by default): fastest for large loads.
    ``TRUE``: force a refresh per request (costly; small tests only).
    """

    WAIT_FOR = "wait_for"
    NONE = "false"
    TRUE = "true"


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class LuceneOptions:
    """How a backend writes to and searches its index (the same options on both engines).

    Args:
        field: Name of the sparse field (no dots).
        max_query_terms: Query pruning budget: the largest weights kept (the engines' clause limit
            is 1024 by default on OpenSearch, dynamic on Elasticsearch 8+).
        refresh: When writes become searchable.
        shards: ``number_of_shards`` for a new index (engine default if None).
        replicas: ``number_of_replicas`` for a new index (engine default if None).
        chunk_items: Items per ``_bulk`` request.
        chunk_bytes: Bytes per ``_bulk`` request.
        retry: Retry budget for transient failures (429, 502-504, connection errors).
        timeout: Seconds per request.
        dense_size: Dimension of the dense field (cosine); None: no dense leg.
        dense_field: Name of the dense field.

    Example:
        >>> LuceneOptions(replicas=0).refresh.value
        'wait_for'
    """

    field: str = "splade"
    max_query_terms: int = 1024
    refresh: Refresh = Refresh.WAIT_FOR
    shards: int | None = None
    replicas: int | None = None
    chunk_items: int = 500
    chunk_bytes: int = 5 * 1024 * 1024
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    timeout: float = 30.0
    dense_size: int | None = None
    dense_field: str = "dense"

    def __post_init__(self) -> None:
        bodies.check_field_name(self.field)
        object.__setattr__(self, "refresh", Refresh(self.refresh))
        if self.retry is None:  # accepted for "the default policy"
            object.__setattr__(self, "retry", RetryPolicy())
        if not _positive_int(self.max_query_terms):
            raise ValueError(f"max_query_terms must be a positive integer, got {self.max_query_terms!r}")
        if self.shards is not None and not _positive_int(self.shards):
            raise ValueError("shards must be positive")
        if self.replicas is not None and (isinstance(self.replicas, bool) or self.replicas < 0):
            raise ValueError("replicas must be >= 0")
        if not (_positive_int(self.chunk_items) and _positive_int(self.chunk_bytes)):
            raise ValueError("chunk_items and chunk_bytes must be positive")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.dense_size is not None and not _positive_int(self.dense_size):
            raise ValueError("dense_size must be a positive integer")
        if (
            not self.dense_field
            or "." in self.dense_field
            or self.dense_field in (self.field, *bodies.PAYLOAD_FIELDS)
        ):
            raise ValueError(f"invalid dense field name {self.dense_field!r}")
