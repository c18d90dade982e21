"""Qdrant: one backend (:mod:`.backend`) over two stores, qdrant-client (:mod:`.adapter`, a server or
its local mode, whose storage internals are reached in :mod:`.local_storage` only) and Qdrant Edge
(:mod:`.edge`, its storage options in :mod:`.storage`), with what is sent to either built as data in
:mod:`.bodies`."""

from sparsebridge.backends.qdrant.adapter import QdrantBackend, QdrantTarget
from sparsebridge.backends.qdrant.edge import QdrantEdgeBackend, QdrantEdgeTarget
from sparsebridge.backends.qdrant.storage import EdgeStorage

__all__ = ["EdgeStorage", "QdrantBackend", "QdrantEdgeBackend", "QdrantEdgeTarget", "QdrantTarget"]
