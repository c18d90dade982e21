"""OpenSearch: request bodies (:mod:`.bodies`), dialect (:mod:`.dialect`), backend (:mod:`.adapter`)."""

from sparsebridge.backends.opensearch.adapter import OpenSearchBackend
from sparsebridge.backends.opensearch.dialect import OpenSearchDialect, OpenSearchHybrid, OpenSearchQuery

__all__ = ["OpenSearchBackend", "OpenSearchDialect", "OpenSearchHybrid", "OpenSearchQuery"]
