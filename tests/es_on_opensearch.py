"""The Elasticsearch adapter's ``rank_features`` bodies sent to the live OpenSearch node.

The Elasticsearch test node (scripts/elasticsearch.sh) has no ``rank_features`` field (no
mapper-extras module). The ``rank_features`` DSL, ``_bulk`` and ``_msearch`` are shared by both
engines, so the Elasticsearch dialect's ``rank_features`` bodies, bulk loop and response parsing
run against OpenSearch here; only the client boundary (client, its errors, the server-version
check) is OpenSearch's.
"""

from __future__ import annotations

from typing import Any

from sparsebridge.backends import ClusterTarget, FieldType, LuceneBackend
from sparsebridge.backends.elasticsearch import ElasticsearchDialect
from sparsebridge.backends.lucene import Answer, ErrorInfo, Exchange, Request
from sparsebridge.backends.lucene.dialect import done
from sparsebridge.backends.opensearch import OpenSearchDialect


class EsDialectOnOpenSearch(ElasticsearchDialect):
    """Elasticsearch's bodies behind OpenSearch's client boundary."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._client_side = OpenSearchDialect()

    def new_client(self, target: ClusterTarget, *, timeout: float) -> Any:
        return self._client_side.new_client(target, timeout=timeout)

    def perform(self, client: Any, request: Request) -> Answer:
        return self._client_side.perform(client, request)

    def error_info(self, error: BaseException) -> ErrorInfo | None:
        return self._client_side.error_info(error)

    def open(self) -> Exchange[None]:
        return done(None)  # OpenSearch is no Elasticsearch: the version check would refuse it


def es_bodies_on_opensearch(
    target: ClusterTarget, *, field_type: FieldType = FieldType.RANK_FEATURES, **options: Any
) -> LuceneBackend:
    """A backend with the Elasticsearch dialect's ``field_type`` bodies on the OpenSearch node."""
    return LuceneBackend(target, dialect=EsDialectOnOpenSearch(field_type=field_type), **options)
