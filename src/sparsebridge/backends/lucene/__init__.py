"""What OpenSearch and Elasticsearch share: ``rank_features`` bodies, ``_bulk``, ``_msearch``, the backend.

:mod:`.bodies` (pure request bodies), :mod:`.bulk` (the ``_bulk`` loop), :mod:`.dialect` (what an
engine plug-in provides: bodies, exchanges, client hooks), :mod:`.options`, :mod:`.target`, and
:mod:`.adapter` (:class:`LuceneBackend`, which does all of the I/O).
"""

from sparsebridge.backends.lucene.adapter import LuceneBackend
from sparsebridge.backends.lucene.bodies import FieldType
from sparsebridge.backends.lucene.dialect import (
    Answer,
    Dialect,
    ErrorInfo,
    Exchange,
    Request,
    Search,
    SearchLeg,
)
from sparsebridge.backends.lucene.options import LuceneOptions, Refresh
from sparsebridge.backends.lucene.target import ClusterTarget

__all__ = [
    "Answer",
    "ClusterTarget",
    "Dialect",
    "ErrorInfo",
    "Exchange",
    "FieldType",
    "LuceneBackend",
    "LuceneOptions",
    "Refresh",
    "Request",
    "Search",
    "SearchLeg",
]
