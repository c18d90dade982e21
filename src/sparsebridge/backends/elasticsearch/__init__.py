"""Elasticsearch: its own request bodies (:mod:`.bodies`) and the adapter (:mod:`.adapter`)."""

from sparsebridge.backends.elasticsearch.adapter import (
    ElasticsearchBackend,
    ElasticsearchDialect,
    check_server_version,
)
from sparsebridge.backends.elasticsearch.bodies import SparseQuery

__all__ = ["ElasticsearchBackend", "ElasticsearchDialect", "SparseQuery", "check_server_version"]
