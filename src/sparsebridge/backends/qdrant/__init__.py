"""Qdrant: pure request builders (:mod:`.bodies`) and the qdrant-client adapter (:mod:`.adapter`)."""

from sparsebridge.backends.qdrant.adapter import QdrantBackend, QdrantTarget

__all__ = ["QdrantBackend", "QdrantTarget"]
