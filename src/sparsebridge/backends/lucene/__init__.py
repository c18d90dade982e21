"""What OpenSearch and Elasticsearch share: ``rank_features`` bodies, ``_bulk``, ``_msearch``, the adapter."""

from sparsebridge.backends.lucene.adapter import (
    ClusterTarget,
    Dialect,
    ErrorInfo,
    LuceneBackend,
    Refresh,
    SearchLeg,
)
from sparsebridge.backends.lucene.bodies import FieldType

__all__ = ["ClusterTarget", "Dialect", "ErrorInfo", "FieldType", "LuceneBackend", "Refresh", "SearchLeg"]
