"""Backends: the sink protocol, one module per engine, and ``open_backend`` for target URIs.

Target URIs:

- ``qdrant+local://PATH/COLLECTION``: embedded Qdrant storing in directory ``PATH`` (the default).
- ``qdrant://HOST:PORT/COLLECTION`` (``qdrant+https://`` for TLS): a Qdrant server.
- ``memory://``: the exact in-memory reference (lives only as long as the process).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sparsebridge.backends.base import Backend, Record, point_id
from sparsebridge.backends.memory import MemoryBackend
from sparsebridge.backends.qdrant import QdrantBackend, QdrantTarget
from sparsebridge.backends.retry import RetryPolicy

__all__ = [
    "DEFAULT_TARGET",
    "Backend",
    "MemoryBackend",
    "QdrantBackend",
    "QdrantTarget",
    "Record",
    "RetryPolicy",
    "open_backend",
    "point_id",
]

DEFAULT_TARGET = "qdrant+local://.sparsebridge/qdrant/docs"


def open_backend(uri: str, *, api_key: str | None = None, **options: Any) -> Backend:
    """Build the backend a target URI names (no I/O happens until it is used).

    Raises:
        ValueError: The URI is malformed or names an unknown scheme.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise ValueError(f"target {uri!r} is not a URI like qdrant://host:6333/collection")
    if scheme == "memory":
        return MemoryBackend()
    if scheme == "qdrant+local":
        directory, _, collection = rest.rstrip("/").rpartition("/")
        if not directory or not collection:
            raise ValueError(f"target {uri!r} must be qdrant+local://DIRECTORY/COLLECTION")
        return QdrantBackend(QdrantTarget(collection, path=directory), **options)
    if scheme in ("qdrant", "qdrant+https"):
        parts = urlsplit(f"http://{rest}")
        collection = parts.path.strip("/")
        if not parts.hostname or not collection or "/" in collection:
            raise ValueError(f"target {uri!r} must be {scheme}://HOST:PORT/COLLECTION")
        try:
            port = parts.port or 6333
        except ValueError as e:
            raise ValueError(f"target {uri!r} has an invalid port") from e
        http = "https" if scheme == "qdrant+https" else "http"
        url = f"{http}://{parts.hostname}:{port}"
        return QdrantBackend(QdrantTarget(collection, url=url, api_key=api_key), **options)
    raise ValueError(f"unknown target scheme {scheme!r} in {uri!r} (known: qdrant+local, qdrant, memory)")
