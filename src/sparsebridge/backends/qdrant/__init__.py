"""Qdrant: pure request builders (:mod:`.bodies`), the qdrant-client adapter (:mod:`.adapter`) and
the Qdrant Edge adapter (:mod:`.edge`)."""

from sparsebridge.backends.qdrant.adapter import QdrantBackend, QdrantTarget
from sparsebridge.backends.qdrant.edge import QdrantEdgeBackend, QdrantEdgeTarget

__all__ = ["QdrantBackend", "QdrantEdgeBackend", "QdrantEdgeTarget", "QdrantTarget"]
