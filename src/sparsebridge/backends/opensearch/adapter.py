"""The OpenSearch backend: the Lucene backend with OpenSearch's dialect (:mod:`.dialect`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sparsebridge.backends.lucene.adapter import LuceneBackend
from sparsebridge.backends.lucene.target import ClusterTarget
from sparsebridge.backends.opensearch.dialect import OpenSearchDialect, OpenSearchHybrid, OpenSearchQuery

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

__all__ = ["OpenSearchBackend"]


class OpenSearchBackend(LuceneBackend):
    """Write and search SPLADE vectors in an OpenSearch index (``rank_features``).

    Every option of :class:`~sparsebridge.backends.lucene.LuceneOptions` is accepted as a keyword
    (``replicas=0``, ``dense_size=384``, ...), or as one ``options=`` object.

    Example:
        >>> from sparsebridge.types import SparseVector
        >>> backend = OpenSearchBackend(ClusterTarget("docs", url="http://localhost:9200"))
        >>> backend.search_body(SparseVector.from_dict({1012: 0.5}), k=3)["query"]
        {'bool': {'should': [{'rank_feature': {'field': 'splade.1012', 'linear': {}, 'boost': 0.5}}]}}
    """

    dialect: OpenSearchDialect

    def __init__(
        self,
        target: ClusterTarget,
        *,
        query: OpenSearchQuery = OpenSearchQuery.RANK_FEATURE,
        hybrid: OpenSearchHybrid = OpenSearchHybrid.CLIENT,
        client: OpenSearch | None = None,
        **options: Any,
    ) -> None:
        """Configure the backend; no I/O happens here.

        Args:
            target: The index and how to connect (``api_key`` is not supported by OpenSearch).
            query: Which query ``search`` sends.
            hybrid: Where hybrid queries are fused (see :class:`OpenSearchHybrid`).
            client: An ``opensearchpy.OpenSearch`` to use instead of building one.
            **options: :class:`~sparsebridge.backends.lucene.LuceneOptions` fields, ``options=``,
                or ``location=`` (the parsed target URI).
        """
        if isinstance(target, ClusterTarget) and target.api_key is not None:
            raise ValueError("OpenSearch takes a username and password, not an API key")
        dialect = OpenSearchDialect(query=query, hybrid=hybrid)
        super().__init__(target, dialect=dialect, client=client, **options)

    @property
    def query(self) -> OpenSearchQuery:
        return self.dialect.query

    @property
    def hybrid(self) -> OpenSearchHybrid:
        return self.dialect.hybrid

    def plugins(self) -> frozenset[str]:
        """The plugins installed on the cluster (``GET _cat/plugins`` components), read once."""
        return self._run(self.dialect.plugins())
