"""Backends: the sink protocol, one package per engine, and ``open_backend`` for target URIs.

Layout: :mod:`.base` (the protocol and the record), :mod:`.memory` (the exact reference),
:mod:`.qdrant`, :mod:`.lucene` (what OpenSearch and Elasticsearch share), :mod:`.opensearch`,
:mod:`.elasticsearch` (each with its pure ``bodies`` and its ``adapter``), :mod:`.retry` (one
failure classification for every engine) and :mod:`.targets` (URI parsing; the schemes are listed
there).

Connection options for the cluster schemes (``username``, ``password``, ``ca_certs``,
``verify_certs``) are keyword arguments of :func:`open_backend`; any other keyword goes to the
backend's constructor.
"""

from __future__ import annotations

from typing import Any

from sparsebridge.backends.base import (
    Backend,
    Record,
    SupportsBatchSearch,
    SupportsDenseSearch,
    SupportsHybridSearch,
    SupportsOptimize,
    SupportsTextSearch,
    point_id,
)
from sparsebridge.backends.elasticsearch import ElasticsearchBackend
from sparsebridge.backends.lucene import ClusterTarget, FieldType, LuceneBackend, Refresh
from sparsebridge.backends.memory import MemoryBackend
from sparsebridge.backends.opensearch import OpenSearchBackend, OpenSearchHybrid, OpenSearchQuery
from sparsebridge.backends.postgres import PostgresBackend, PostgresTarget, SparseIndex
from sparsebridge.backends.qdrant import QdrantBackend, QdrantEdgeBackend, QdrantEdgeTarget, QdrantTarget
from sparsebridge.backends.qdrant.storage import EdgeStorage
from sparsebridge.backends.retry import RetryPolicy
from sparsebridge.backends.targets import Engine, Target, parse_target

__all__ = [
    "DEFAULT_TARGET",
    "Backend",
    "ClusterTarget",
    "ElasticsearchBackend",
    "Engine",
    "FieldType",
    "LuceneBackend",
    "MemoryBackend",
    "OpenSearchBackend",
    "OpenSearchHybrid",
    "OpenSearchQuery",
    "PostgresBackend",
    "PostgresTarget",
    "QdrantBackend",
    "QdrantEdgeBackend",
    "QdrantEdgeTarget",
    "QdrantTarget",
    "Record",
    "Refresh",
    "RetryPolicy",
    "SparseIndex",
    "SupportsBatchSearch",
    "SupportsDenseSearch",
    "SupportsHybridSearch",
    "SupportsOptimize",
    "SupportsTextSearch",
    "Target",
    "open_backend",
    "parse_target",
    "point_id",
]

DEFAULT_TARGET = "qdrant+edge://.sparsebridge/qdrant-edge/docs"


def open_backend(
    target: str | Target,
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
        target: The target URI (see :mod:`sparsebridge.backends.targets`), or one already parsed.
        api_key: Qdrant server or Elasticsearch API key.
        username: OpenSearch/Elasticsearch basic-auth user (with ``password``), PostgreSQL user; or
            in the URI's user information (``opensearch://USER:PASSWORD@HOST/INDEX``), never printed.
        password: OpenSearch/Elasticsearch basic-auth password, PostgreSQL password (or in the URI;
            PostgreSQL: else libpq's own, ``PGPASSWORD`` or ``.pgpass``).
        ca_certs: OpenSearch/Elasticsearch CA bundle for ``+https`` targets.
        verify_certs: False turns TLS certificate checks off (``+https`` targets).
        **options: Passed to the backend's constructor (``retry``, ``refresh``, ``field_type``,
            ``bm25`` for Qdrant Edge, ...).

    Raises:
        ValueError: The URI is malformed, names an unknown scheme, or an option does not apply to
            it; or the URI and a keyword give different credentials.

    Example:
        >>> open_backend("opensearch://localhost:9200/docs").target.index
        'docs'
    """
    parsed = target if isinstance(target, Target) else parse_target(target)
    parsed = parsed.with_credentials(username=username, password=password)  # the URI's, or these
    if options.get("bm25") and parsed.engine is not Engine.QDRANT_EDGE:
        raise ValueError("bm25 (building a BM25 text index) is a Qdrant Edge option")
    connection = {"username": parsed.username, "password": parsed.password, "ca_certs": ca_certs}
    if parsed.cluster:
        assert parsed.name is not None and parsed.url is not None
        if options.pop("idf", False):
            raise ValueError("the IDF modifier is a Qdrant option")
        cluster = ClusterTarget(
            parsed.name, url=parsed.url, api_key=api_key, verify_certs=verify_certs, **connection
        )
        if parsed.engine is Engine.OPENSEARCH:
            return OpenSearchBackend(cluster, location=parsed, **options)
        return ElasticsearchBackend(cluster, location=parsed, **options)
    if parsed.engine is Engine.POSTGRES:
        assert parsed.host is not None and parsed.port is not None and parsed.name is not None
        if options.pop("idf", False) or api_key is not None or ca_certs is not None or not verify_certs:
            raise ValueError(
                "idf, api_key, ca_certs and verify_certs do not apply to postgres:// (TLS: PGSSLMODE)"
            )
        where = PostgresTarget(
            parsed.name,
            host=parsed.host,
            port=parsed.port,
            database=parsed.database,
            user=parsed.username,
            password=parsed.password,
        )
        return PostgresBackend(where, location=parsed, **options)
    given = [name for name, value in connection.items() if value is not None]
    if given or not verify_certs:
        raise ValueError(
            f"{', '.join(given) or 'verify_certs'} applies to opensearch/elasticsearch targets only"
        )
    if parsed.engine is Engine.MEMORY:
        return MemoryBackend()
    if parsed.engine is Engine.QDRANT_EDGE:
        assert parsed.path is not None and parsed.name is not None
        options.pop("retry", None)  # in-process: nothing transient to retry
        if parsed.options:
            if "storage" in options:
                raise ValueError("give the storage options in the target URI or as storage=, not both")
            options["storage"] = EdgeStorage.parse(parsed.options)
        return QdrantEdgeBackend(QdrantEdgeTarget(parsed.path, parsed.name), **options)
    assert parsed.engine is Engine.QDRANT and parsed.name is not None
    if parsed.path is not None:
        return QdrantBackend(QdrantTarget(parsed.name, path=parsed.path), **options)
    return QdrantBackend(QdrantTarget(parsed.name, url=parsed.url, api_key=api_key), **options)
