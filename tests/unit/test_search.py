"""The text-query searcher the connectors build on: the backend's hits, misuse refused before I/O."""

from __future__ import annotations

from typing import Any

import pytest

from sparsebridge.backends import MemoryBackend, Record
from sparsebridge.search import Searcher, SearchMode, hit_text
from sparsebridge.types import Document


@pytest.fixture(scope="module")
def backend(encoder: Any, corpus: list[tuple[str, str]]) -> MemoryBackend:
    memory = MemoryBackend()
    vectors = encoder.encode_documents([text for _, text in corpus])
    memory.write([Record(Document(i, t), v) for (i, t), v in zip(corpus, vectors, strict=True)])
    return memory


def test_sparse_mode_returns_the_backends_hits(
    backend: MemoryBackend, encoder: Any, queries: list[str]
) -> None:
    hits = Searcher(backend, encoder).search(queries, k=5)
    assert hits == backend.search_batch(encoder.encode_queries(queries), k=5)
    assert all(hit_text(hit) for per_query in hits for hit in per_query)


def test_precomputed_vectors_are_used_as_given(backend: MemoryBackend, encoder: Any) -> None:
    vectors = encoder.encode_queries(["river flood"])
    hits = Searcher(backend, encoder).search(["anything else"], k=3, sparse=vectors)
    assert hits == backend.search_batch(vectors, k=3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": SearchMode.HYBRID}, "needs a second leg"),
        ({"mode": SearchMode.BM25}, "no BM25"),
        ({"bm25": True}, "hybrid mode only"),
        ({"candidates": 0}, "candidates"),
    ],
)
def test_a_setup_the_backend_cannot_run_is_refused(
    backend: MemoryBackend, encoder: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Searcher(backend, encoder, **options)


def test_bad_queries_are_refused(backend: MemoryBackend, encoder: Any) -> None:
    searcher = Searcher(backend, encoder)
    with pytest.raises(TypeError, match="not a single string"):
        searcher.search("river", k=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-blank"):
        searcher.search(["  "], k=3)
    with pytest.raises(ValueError, match="2 sparse query vectors for 1"):
        searcher.search(["river"], k=3, sparse=encoder.encode_queries(["a", "b"]))
