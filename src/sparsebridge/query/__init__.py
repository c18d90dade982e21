"""Queries as data: the hybrid query, client-side fusion, and pure per-engine body builders.

``fusion`` holds the one definition of each fusion method; ``qdrant``, ``opensearch`` and
``elasticsearch`` build request bodies (no I/O); executors live on the backends.
"""

from sparsebridge.query.fusion import Fusion, FusionMethod, fuse
from sparsebridge.query.hybrid import HybridQuery, LegKind

__all__ = ["Fusion", "FusionMethod", "HybridQuery", "LegKind", "fuse"]
