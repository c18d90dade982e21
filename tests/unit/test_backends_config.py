from __future__ import annotations

import pytest

from sparsebridge.backends import (
    DEFAULT_TARGET,
    MemoryBackend,
    QdrantBackend,
    QdrantEdgeBackend,
    open_backend,
    point_id,
)
from sparsebridge.backends.qdrant import QdrantTarget
from sparsebridge.backends.retry import RetryPolicy


def test_uri_parsing() -> None:
    local = open_backend("qdrant+local://./data/qdrant/docs")
    assert isinstance(local, QdrantBackend)
    assert (local.target.path, local.target.collection, local.target.url) == ("./data/qdrant", "docs", None)
    server = open_backend("qdrant://db.example:7000/col", api_key="k")
    assert isinstance(server, QdrantBackend)
    assert (server.target.url, server.target.collection, server.target.api_key) == (
        "http://db.example:7000",
        "col",
        "k",
    )
    tls = open_backend("qdrant+https://db.example/col")
    assert isinstance(tls, QdrantBackend) and tls.target.url == "https://db.example:6333"
    assert isinstance(open_backend("memory://"), MemoryBackend)
    assert isinstance(open_backend(DEFAULT_TARGET), QdrantEdgeBackend)
    edge = open_backend("qdrant+edge://./data/edge/docs", dense_size=8)
    assert isinstance(edge, QdrantEdgeBackend) and edge.dense_size == 8
    assert (edge.target.directory, edge.target.collection) == ("./data/edge", "docs")


@pytest.mark.parametrize(
    "uri",
    [
        "docs",
        "qdrant+local://docs",
        "qdrant+edge://docs",
        "qdrant+edge://data/..",
        "qdrant://host:6333",
        "qdrant://host:6333/a/b",
        "qdrant://host:notaport/c",
        "qdrant://host/bad name",
        "postgres://x/y",
    ],
)
def test_bad_uris_fail_before_any_io(uri: str) -> None:
    with pytest.raises(ValueError):
        open_backend(uri)


def test_target_and_option_validation() -> None:
    with pytest.raises(ValueError):
        QdrantTarget("c")
    with pytest.raises(ValueError):
        QdrantTarget("c", path="p", url="http://x")
    with pytest.raises(ValueError, match="API key"):
        QdrantTarget("c", path="p", api_key="k")
    with pytest.raises(ValueError):
        QdrantBackend(QdrantTarget("c", path="p"), batch_size=0)
    with pytest.raises(ValueError):
        QdrantBackend(QdrantTarget("c", path="p"), vector_name="v", dense_name="v")
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_point_ids_are_deterministic_uuids() -> None:
    assert point_id("doc-1") == point_id("doc-1")
    assert point_id("doc-1") != point_id("doc-2")
    assert len(point_id("x")) == 36


def test_point_id_is_pinned() -> None:  # stored collections depend on it: it never changes
    assert point_id("doc-1") == "72a57f8e-edff-557c-9cfc-32be678d5b1e"


@pytest.mark.parametrize(
    ("status", "error_type", "reason", "kind"),
    [
        (None, "", "connection refused", "transient"),
        (429, "es_rejected_execution_exception", "rejected execution", "transient"),
        (429, "circuit_breaking_exception", "[parent] Data too large", "transient"),
        (429, "cluster_block_exception", "blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded]", "blocked"),
        (503, "unavailable_shards_exception", "", "transient"),
        (502, "", "", "transient"),
        (400, "mapper_parsing_exception", "failed to parse field", "permanent"),
        (400, "illegal_argument_exception", "", "permanent"),
        (403, "cluster_block_exception", "blocked by: [FORBIDDEN/8/index write (api)]", "fatal"),
        (401, "security_exception", "", "fatal"),
        (404, "index_not_found_exception", "", "fatal"),
    ],
)
def test_failure_classification(status: int | None, error_type: str, reason: str, kind: str) -> None:
    from sparsebridge.backends.retry import classify_failure

    assert classify_failure(status, error_type, reason).value == kind


def test_cluster_uris() -> None:
    from sparsebridge.backends import ElasticsearchBackend, FieldType, OpenSearchBackend

    os_ = open_backend("opensearch://db.example:9201/docs", username="u", password="s3cret")
    assert isinstance(os_, OpenSearchBackend)
    assert (os_.target.url, os_.target.index, os_.target.username) == ("http://db.example:9201", "docs", "u")
    assert "s3cret" not in repr(os_.target)  # secrets stay out of logs
    tls = open_backend("opensearch+https://db.example/docs", ca_certs="/ca.pem")
    assert isinstance(tls, OpenSearchBackend) and tls.target.url == "https://db.example:9200"
    es = open_backend(
        "elasticsearch+https://es.example:9243/idx", verify_certs=False, field_type="sparse_vector"
    )
    assert isinstance(es, ElasticsearchBackend) and es.field_type is FieldType.SPARSE_VECTOR
    assert (es.target.url, es.target.verify_certs) == ("https://es.example:9243", False)
    assert isinstance(open_backend("elasticsearch://h/idx"), ElasticsearchBackend)


@pytest.mark.parametrize(
    ("uri", "options"),
    [
        ("opensearch://host:9200", {}),
        ("opensearch://host:9200/Upper", {}),
        ("opensearch://host:9200/_private", {}),
        ("opensearch://host:9200/a/b", {}),
        ("elasticsearch://host:x/idx", {}),
        ("opensearch://host/idx", {"username": "u"}),  # a user without a password
        ("opensearch://host/idx", {"ca_certs": "/ca.pem"}),  # TLS options on http
        ("opensearch://host/idx", {"api_key": "k"}),  # OpenSearch has no API keys
        ("opensearch://host/idx", {"idf": True}),
        ("qdrant://host/c", {"username": "u", "password": "p"}),
        ("memory://", {"verify_certs": False}),
    ],
)
def test_bad_cluster_targets_fail_before_any_io(uri: str, options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        open_backend(uri, **options)  # type: ignore[arg-type]
