"""Elasticsearch: its own request bodies (:mod:`.bodies`) and the adapter (:mod:`.adapter`)."""

from sparsebridge.backends.elasticsearch.adapter import (
    ElasticsearchBackend,
    ElasticsearchDialect,
    check_server_version,
)

__all__ = ["ElasticsearchBackend", "ElasticsearchDialect", "check_server_version"]
