"""OpenSearch: its own request bodies (:mod:`.bodies`) and the adapter (:mod:`.adapter`)."""

from sparsebridge.backends.opensearch.adapter import (
    OpenSearchBackend,
    OpenSearchDialect,
    OpenSearchHybrid,
    OpenSearchQuery,
)

__all__ = ["OpenSearchBackend", "OpenSearchDialect", "OpenSearchHybrid", "OpenSearchQuery"]
