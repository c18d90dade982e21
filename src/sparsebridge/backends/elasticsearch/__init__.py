"""Elasticsearch: request bodies (:mod:`.bodies`), dialect (:mod:`.dialect`), backend (:mod:`.adapter`)."""

from sparsebridge.backends.elasticsearch.adapter import ElasticsearchBackend
from sparsebridge.backends.elasticsearch.bodies import SparseQuery
from sparsebridge.backends.elasticsearch.dialect import ElasticsearchDialect, check_server_version

__all__ = ["ElasticsearchBackend", "ElasticsearchDialect", "SparseQuery", "check_server_version"]
