"""One harness per backend for the contract suite: how to make a fresh one, and how exact it is.

Backends: the exact in-memory reference, embedded Qdrant (qdrant-client's local mode and Qdrant
Edge), OpenSearch (live node), Elasticsearch (live node: ``sparse_vector`` with the query the
node offers), PostgreSQL with pgvector (live server, exact mode), and the Elasticsearch adapter's
``rank_features`` bodies sent to the live OpenSearch node (the DSL is shared; the Elasticsearch test
node has no ``rank_features`` field).
"""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from es_on_opensearch import es_bodies_on_opensearch as es_backend_on_opensearch
from postgres_server import drop_table, new_table
from sparsebridge.backends import (
    Backend,
    ClusterTarget,
    FieldType,
    QdrantBackend,
    QdrantEdgeBackend,
    QdrantEdgeTarget,
    QdrantTarget,
    RetryPolicy,
    open_backend,
)

FAST_FAIL = RetryPolicy(max_attempts=1, max_total_seconds=1)


@dataclass
class Harness:
    """How the contract suite drives one backend."""

    name: str
    make: Callable[..., Backend]  # a fresh, empty backend (unique index/collection); kwargs: variant
    unreachable: Callable[[], Backend]  # the same backend pointed at nothing (no network may happen)
    quantized: bool  # scores stored with 9 significant bits (rank_features): overlap, not identity
    mismatch: tuple[dict[str, Any], dict[str, Any]] | None  # (create with, then open with) -> mismatch
    opened: list[Backend] = field(default_factory=list)
    cleanup: Callable[[], None] = lambda: None


def qdrant_harness(tmp_path: Path) -> Harness:
    def make(**options: Any) -> Backend:
        return QdrantBackend(QdrantTarget("docs", path=str(tmp_path / "qdrant")), **options)

    def unreachable() -> Backend:
        return QdrantBackend(QdrantTarget("docs", url="http://127.0.0.1:9"), retry=FAST_FAIL)

    return Harness("qdrant", make, unreachable, quantized=False, mismatch=({}, {"idf": True}))


def qdrant_edge_harness(tmp_path: Path) -> Harness:
    def make(**options: Any) -> Backend:
        return QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path / "edge"), "docs"), **options)

    def unreachable() -> Backend:  # a shard under a regular file: any I/O would fail
        (tmp_path / "a-file").write_text("")
        return QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path / "a-file"), "docs"))

    return Harness("qdrant-edge", make, unreachable, quantized=False, mismatch=({}, {"idf": True}))


def cluster_harness(name: str, cls: type[Any], url: str, **fixed: Any) -> Harness:
    index = f"contract-{name}-{uuid.uuid4().hex[:10]}"

    def make(**options: Any) -> Backend:
        return cls(ClusterTarget(index, url=url), replicas=0, **fixed, **options)  # type: ignore[no-any-return]

    def unreachable() -> Backend:
        return cls(ClusterTarget(index, url="http://127.0.0.1:9"), retry=FAST_FAIL, **fixed)  # type: ignore[no-any-return]

    def cleanup() -> None:  # plain HTTP: the same on both engines
        try:
            urllib.request.urlopen(urllib.request.Request(f"{url}/{index}", method="DELETE"), timeout=30)
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise

    return Harness(
        name, make, unreachable, quantized=True, mismatch=({}, {"field": "other"}), cleanup=cleanup
    )


def postgres_harness(url: str) -> Harness:
    table = new_table("contract")

    def make(**options: Any) -> Backend:
        return open_backend(f"{url}/{table}", **options)

    def unreachable() -> Backend:
        return open_backend(f"postgres://127.0.0.1:9/db/{table}", retry=FAST_FAIL, connect_timeout=1)

    return Harness(
        "postgres",
        make,
        unreachable,
        quantized=False,
        mismatch=({}, {"dense_size": 8}),
        cleanup=lambda: drop_table(url, table),
    )


BACKENDS = [
    "memory",
    "qdrant",
    "qdrant-edge",
    "opensearch",
    "elasticsearch",
    "es-rank_features-on-opensearch",
    "postgres",
]
SCHEMA_BACKENDS = BACKENDS[1:]  # the in-memory reference has no schema


def es_bodies_on_opensearch(url: str) -> Harness:
    """The Elasticsearch adapter's ``rank_features`` path against the live OpenSearch node."""
    return cluster_harness("es", es_backend_on_opensearch, url, field_type=FieldType.RANK_FEATURES)
