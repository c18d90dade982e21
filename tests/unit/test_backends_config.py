from __future__ import annotations

import pytest

from sparsebridge.backends import DEFAULT_TARGET, MemoryBackend, QdrantBackend, open_backend, point_id
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
    assert isinstance(open_backend(DEFAULT_TARGET), QdrantBackend)


@pytest.mark.parametrize(
    "uri",
    [
        "docs",
        "qdrant+local://docs",
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
