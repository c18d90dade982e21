"""Fixtures of the contract suite: a harness per backend, the encoded corpus and the queries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backend_harness import (
    BACKENDS,
    Harness,
    cluster_harness,
    es_bodies_on_opensearch,
    postgres_harness,
    qdrant_edge_harness,
    qdrant_harness,
)

from sparsebridge.backends import Backend, ElasticsearchBackend, MemoryBackend, OpenSearchBackend, Record
from sparsebridge.encoder import Encoder
from sparsebridge.types import Document


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    name = request.param
    if name == "memory":
        h = Harness("memory", MemoryBackend, MemoryBackend, quantized=False, mismatch=None)
    elif name == "qdrant":
        h = qdrant_harness(tmp_path)
    elif name == "qdrant-edge":
        h = qdrant_edge_harness(tmp_path)
    elif name == "postgres":
        h = postgres_harness(request.getfixturevalue("postgres_url"))
    elif name == "elasticsearch":
        h = cluster_harness(name, ElasticsearchBackend, request.getfixturevalue("elasticsearch_url"))
    else:
        url = request.getfixturevalue("opensearch_url")
        if name == "opensearch":
            h = cluster_harness(name, OpenSearchBackend, url)
        else:
            h = es_bodies_on_opensearch(url)
    tracked = h.make

    def make(**options: Any) -> Backend:
        backend = tracked(**options)
        h.opened.append(backend)
        return backend

    h.make = make
    yield h
    for backend in h.opened:
        backend.close()
    h.cleanup()


@pytest.fixture(scope="session")
def records(encoder: Encoder, corpus: list[tuple[str, str]]) -> list[Record]:
    vectors = encoder.encode_documents([text for _, text in corpus])
    return [
        Record(Document(i, t, {"n": n, "topic": i.split("-")[0]}), v)
        for n, ((i, t), v) in enumerate(zip(corpus, vectors, strict=True))
    ]


@pytest.fixture(scope="session")
def query_vectors(encoder: Encoder, queries: list[str], corpus: list[tuple[str, str]]) -> list[Any]:
    """The shared queries, plus 32 made from document texts (more score ties and near-ties to face)."""
    texts = queries + [" ".join(text.split()[:4]) for _, text in corpus[::7]][:32]
    return list(encoder.encode_queries(texts))
