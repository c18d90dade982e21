"""OpenSearch indices with a ``rank_features`` field, through opensearch-py.

The index maps the sparse field as ``rank_features`` (feature names are token ids, see
:mod:`sparsebridge.backends.rank_features`), ``text`` as BM25 text, ``doc_id`` as a keyword and
``metadata`` as stored JSON. Document ``_id`` is the UUIDv5 of the document id (the same ids as in
Qdrant), so rewrites are idempotent. Search sends the exact dot product: ``bool.should`` of
``rank_feature`` clauses with ``linear`` and ``boost`` = query weight, or, with
``query=OpenSearchQuery.NEURAL_SPARSE``, the neural-search plugin's ``neural_sparse`` with raw
``query_tokens`` (the plugin must be installed on the cluster).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any

from sparsebridge.backends import rank_features as bodies
from sparsebridge.backends.cluster import (
    ClusterBackend,
    ClusterTarget,
    ErrorInfo,
    Refresh,
    error_info_from_body,
)
from sparsebridge.backends.retry import RetryPolicy
from sparsebridge.errors import MissingExtraError

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

__all__ = ["ClusterTarget", "OpenSearchBackend", "OpenSearchQuery", "Refresh"]


class OpenSearchQuery(str, Enum):
    """Which query ``search`` sends (both score the exact dot product on a ``rank_features`` field)."""

    RANK_FEATURE = "rank_feature"  # core (mapper-extras): bool.should of linear rank_feature clauses
    NEURAL_SPARSE = "neural_sparse"  # neural-search plugin: raw query_tokens, weights in (0, 64]


def _opensearchpy() -> Any:
    try:
        import opensearchpy
    except ImportError as e:
        raise MissingExtraError("opensearch-py", "opensearch") from e
    return opensearchpy


class OpenSearchBackend(ClusterBackend):
    """Write and search SPLADE vectors in an OpenSearch index (``rank_features``).

    Example:
        >>> from sparsebridge.types import SparseVector
        >>> backend = OpenSearchBackend(ClusterTarget("docs", url="http://localhost:9200"))
        >>> backend.search_body(SparseVector.from_dict({1012: 0.5}), k=3)["query"]
        {'bool': {'should': [{'rank_feature': {'field': 'splade.1012', 'linear': {}, 'boost': 0.5}}]}}
    """

    name = "opensearch"

    def __init__(
        self,
        target: ClusterTarget,
        *,
        field: str = "splade",
        query: OpenSearchQuery = OpenSearchQuery.RANK_FEATURE,
        max_query_terms: int = 1024,
        refresh: Refresh = Refresh.WAIT_FOR,
        shards: int | None = None,
        replicas: int | None = None,
        chunk_items: int = 500,
        chunk_bytes: int = 5 * 1024 * 1024,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        client: OpenSearch | None = None,
    ) -> None:
        """Configure the backend; no I/O happens here.

        Args:
            target: The index and how to connect (``api_key`` is not supported by OpenSearch).
            field: Name of the ``rank_features`` field.
            query: Which query ``search`` sends.
            max_query_terms: Query pruning budget (OpenSearch's default clause limit is 1024).
            refresh: When writes become searchable.
            shards: ``number_of_shards`` for a new index (engine default if None).
            replicas: ``number_of_replicas`` for a new index (engine default if None).
            chunk_items: Items per ``_bulk`` request.
            chunk_bytes: Bytes per ``_bulk`` request.
            retry: Retry budget for transient failures (429, 502-504, connection errors).
            timeout: Seconds per request.
            client: An ``opensearchpy.OpenSearch`` to use instead of building one.
        """
        if target.api_key is not None:
            raise ValueError("OpenSearch takes a username and password, not an API key")
        self.query = OpenSearchQuery(query)
        super().__init__(
            target,
            field=field,
            field_type=bodies.FieldType.RANK_FEATURES,
            max_query_terms=max_query_terms,
            refresh=refresh,
            shards=shards,
            replicas=replicas,
            chunk_items=chunk_items,
            chunk_bytes=chunk_bytes,
            retry=retry,
            timeout=timeout,
            client=client,
        )

    def _new_client(self) -> Any:
        target = self.target
        return _opensearchpy().OpenSearch(
            hosts=[target.url],
            http_auth=(target.username, target.password) if target.username is not None else None,
            verify_certs=target.verify_certs,
            ssl_show_warn=target.verify_certs,
            ca_certs=target.ca_certs,
            timeout=self.timeout,
            max_retries=0,  # our RetryPolicy is the only retry layer
            retry_on_timeout=False,
            http_compress=True,
        )

    def _error_info(self, error: BaseException) -> ErrorInfo | None:
        exceptions = _opensearchpy().exceptions
        if isinstance(error, exceptions.ConnectionError):  # includes timeouts; no answer at all
            return ErrorInfo(None, type(error).__name__, str(error))
        if isinstance(error, exceptions.TransportError):
            status = error.status_code if isinstance(error.status_code, int) else None
            return error_info_from_body(status, error.info, str(error.error))
        return None

    def _query_body(self, terms: Mapping[str, float], k: int) -> dict[str, Any]:
        if self.query is OpenSearchQuery.NEURAL_SPARSE:
            return bodies.neural_sparse_search(terms, field=self.field, k=k)
        return bodies.rank_features_search(terms, field=self.field, k=k)
