"""The Elasticsearch backend: the Lucene backend with Elasticsearch's dialect (:mod:`.dialect`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sparsebridge.backends.elasticsearch.bodies import SparseQuery
from sparsebridge.backends.elasticsearch.dialect import ElasticsearchDialect
from sparsebridge.backends.lucene import bodies
from sparsebridge.backends.lucene.adapter import LuceneBackend
from sparsebridge.backends.lucene.target import ClusterTarget

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

__all__ = ["ElasticsearchBackend"]


class ElasticsearchBackend(LuceneBackend):
    """Write and search SPLADE vectors in an Elasticsearch index (``sparse_vector`` or ``rank_features``).

    Every option of :class:`~sparsebridge.backends.lucene.LuceneOptions` is accepted as a keyword
    (``replicas=0``, ``dense_size=384``, ...), or as one ``options=`` object.

    Example:
        >>> backend = ElasticsearchBackend(
        ...     ClusterTarget("docs", url="http://localhost:9200"), sparse_query=SparseQuery.SPARSE_VECTOR
        ... )
        >>> backend.index_body()["mappings"]["properties"]["splade"]
        {'type': 'sparse_vector'}
    """

    dialect: ElasticsearchDialect

    def __init__(
        self,
        target: ClusterTarget,
        *,
        field_type: bodies.FieldType | None = None,
        sparse_query: SparseQuery | None = None,
        licensed: bool = False,
        client: Elasticsearch | None = None,
        **options: Any,
    ) -> None:
        """Configure the backend; no I/O happens here.

        Args:
            target: The index and how to connect (basic auth or ``api_key``).
            field_type: ``sparse_vector`` or ``rank_features``; None: chosen from what the node offers.
            sparse_query: The query to send (:class:`SparseQuery`); None: the first the node offers.
            licensed: The cluster has an Enterprise license: fuse RRF and min-max hybrids
                server-side with the ``rrf`` / ``linear`` retrievers (off by default).
            client: An ``elasticsearch.Elasticsearch`` to use instead of building one.
            **options: :class:`~sparsebridge.backends.lucene.LuceneOptions` fields, ``options=``,
                or ``location=`` (the parsed target URI).
        """
        dialect = ElasticsearchDialect(field_type=field_type, sparse_query=sparse_query, licensed=licensed)
        super().__init__(target, dialect=dialect, client=client, **options)

    @property
    def licensed(self) -> bool:
        return self.dialect.licensed

    @property
    def sparse_query(self) -> SparseQuery:
        """The sparse query this backend sends (chosen from what the node offers, on first use)."""
        self._open()
        return self.dialect._query()
