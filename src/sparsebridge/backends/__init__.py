"""Backends: the sink protocol, one module per engine, and ``open_backend`` for target URIs.

Target URIs:

- ``qdrant+local://PATH/COLLECTION``: embedded Qdrant storing in directory ``PATH`` (the default).
- ``qdrant://HOST:PORT/COLLECTION`` (``qdrant+https://`` for TLS): a Qdrant server.
- ``opensearch://HOST:PORT/INDEX`` (``opensearch+https://`` for TLS): an OpenSearch index
  (``rank_features``); default port 9200.
- ``elasticsearch://HOST:PORT/INDEX`` (``elasticsearch+https://`` for TLS): an Elasticsearch index
  (``sparse_vector`` from 8.15 on, else ``rank_features``; ``field_type=`` to choose); default port 9200.
- ``memory://``: the exact in-memory reference (lives only as long as the process).

Connection options for the two cluster schemes (``username``, ``password``, ``ca_certs``,
``verify_certs``) are keyword arguments of :func:`open_backend`; any other keyword goes to the
backend's constructor.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sparsebridge.backends.base import Backend, Record, point_id
from sparsebridge.backends.cluster import ClusterTarget, Refresh
from sparsebridge.backends.elasticsearch import ElasticsearchBackend
from sparsebridge.backends.memory import MemoryBackend
from sparsebridge.backends.opensearch import OpenSearchBackend, OpenSearchHybrid, OpenSearchQuery
from sparsebridge.backends.qdrant import QdrantBackend, QdrantTarget
from sparsebridge.backends.rank_features import FieldType
from sparsebridge.backends.retry import RetryPolicy

__all__ = [
    "DEFAULT_TARGET",
    "Backend",
    "ClusterTarget",
    "ElasticsearchBackend",
    "FieldType",
    "MemoryBackend",
    "OpenSearchBackend",
    "OpenSearchHybrid",
    "OpenSearchQuery",
    "QdrantBackend",
    "QdrantTarget",
    "Record",
    "Refresh",
    "RetryPolicy",
    "open_backend",
    "point_id",
]

DEFAULT_TARGET = "qdrant+local://.sparsebridge/qdrant/docs"
_CLUSTER_SCHEMES = {
    "opensearch": (OpenSearchBackend, "http"),
    "opensearch+https": (OpenSearchBackend, "https"),
    "elasticsearch": (ElasticsearchBackend, "http"),
    "elasticsearch+https": (ElasticsearchBackend, "https"),
}
_CONNECTION_OPTIONS = ("username", "password", "ca_certs", "verify_certs")


def open_backend(
    uri: str,
    *,
    api_key: str | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_certs: str | None = None,
    verify_certs: bool = True,
    **options: Any,
) -> Backend:
    """Build the backend a target URI names (no I/O happens until it is used).

    Args:
        uri: The target (see the module docstring for the schemes).
        api_key: Qdrant server or Elasticsearch API key.
        username: OpenSearch/Elasticsearch basic-auth user (with ``password``).
        password: OpenSearch/Elasticsearch basic-auth password.
        ca_certs: OpenSearch/Elasticsearch CA bundle for ``+https`` targets.
        verify_certs: False turns TLS certificate checks off (``+https`` targets).
        **options: Passed to the backend's constructor (``retry``, ``refresh``, ``field_type``, ...).

    Raises:
        ValueError: The URI is malformed, names an unknown scheme, or an option does not apply to it.

    Example:
        >>> open_backend("opensearch://localhost:9200/docs").target.index
        'docs'
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise ValueError(f"target {uri!r} is not a URI like qdrant://host:6333/collection")
    connection = {"username": username, "password": password, "ca_certs": ca_certs}
    if scheme in _CLUSTER_SCHEMES:
        backend_class, http = _CLUSTER_SCHEMES[scheme]
        if options.pop("idf", False):
            raise ValueError("the IDF modifier is a Qdrant option")
        index = _host_port_path(uri, scheme, rest, default_port=9200, what="INDEX")
        target = ClusterTarget(
            index[2],
            url=f"{http}://{index[0]}:{index[1]}",
            api_key=api_key,
            verify_certs=verify_certs,
            **connection,
        )
        result: Backend = backend_class(target, **options)
        return result
    given = [name for name, value in connection.items() if value is not None]
    if given or not verify_certs:
        raise ValueError(
            f"{', '.join(given) or 'verify_certs'} applies to opensearch/elasticsearch targets only"
        )
    if scheme == "memory":
        return MemoryBackend()
    if scheme == "qdrant+local":
        directory, _, collection = rest.rstrip("/").rpartition("/")
        if not directory or not collection:
            raise ValueError(f"target {uri!r} must be qdrant+local://DIRECTORY/COLLECTION")
        return QdrantBackend(QdrantTarget(collection, path=directory), **options)
    if scheme in ("qdrant", "qdrant+https"):
        host, port, collection = _host_port_path(uri, scheme, rest, default_port=6333, what="COLLECTION")
        http = "https" if scheme == "qdrant+https" else "http"
        url = f"{http}://{host}:{port}"
        return QdrantBackend(QdrantTarget(collection, url=url, api_key=api_key), **options)
    known = ", ".join(["qdrant+local", "qdrant", "qdrant+https", *_CLUSTER_SCHEMES, "memory"])
    raise ValueError(f"unknown target scheme {scheme!r} in {uri!r} (known: {known})")


def _host_port_path(
    uri: str, scheme: str, rest: str, *, default_port: int, what: str
) -> tuple[str, int, str]:
    parts = urlsplit(f"http://{rest}")
    name = parts.path.strip("/")
    if not parts.hostname or not name or "/" in name or parts.query or parts.fragment:
        raise ValueError(f"target {uri!r} must be {scheme}://HOST:PORT/{what}")
    try:
        port = parts.port or default_port
    except ValueError as e:
        raise ValueError(f"target {uri!r} has an invalid port") from e
    return parts.hostname, port, name
