"""The backend contract, run against every backend (see conftest.py for the list).

write; idempotent re-write; delete; search order and scores against the exact in-memory dot
product; schema mismatch; bad vectors rejected before any network call.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from backend_harness import SCHEMA_BACKENDS, Harness

from sparsebridge.backends import MemoryBackend, Record
from sparsebridge.errors import InputError, SchemaMismatchError
from sparsebridge.types import Document, SearchHit, SparseVector

K = 10
MIN_OVERLAP = 0.99  # rank_features (9-bit stored values): mean overlap@10 with the exact top 10
MAX_REL_ERROR = 0.005  # rank_features: |score - exact| / exact per hit
QUANTIZATION = 2**-8  # one stored value's worst relative error (9 significant bits)


def test_write_counts_and_returns_stats(harness: Harness, records: list[Record]) -> None:
    backend = harness.make()
    backend.ensure_schema()
    stats = backend.write(records)
    assert (stats.written, stats.retries) == (len(records), 0)
    assert backend.count() == len(records)


def test_rewrite_of_the_same_ids_is_idempotent(harness: Harness, records: list[Record]) -> None:
    backend = harness.make()
    backend.ensure_schema()
    backend.write(records[:60])
    backend.write(records[:60])
    assert backend.count() == 60
    # a rewrite replaces: the first document now carries another vector and text
    changed = Record(Document(records[0].document.id, "rewritten", {}), SparseVector.from_dict({7: 2.0}))
    backend.write([changed])
    assert backend.count() == 60
    [hit] = backend.search(SparseVector.from_dict({7: 1.0}), k=1)
    assert (hit.id, hit.payload["text"]) == (records[0].document.id, "rewritten")
    assert hit.score == pytest.approx(2.0, rel=QUANTIZATION)


def test_delete_removes_only_those_ids(harness: Harness, records: list[Record]) -> None:
    backend = harness.make()
    backend.ensure_schema()
    backend.write(records[:40])
    gone = [r.document.id for r in records[:10]]
    backend.delete([*gone, "never-written"])
    assert backend.count() == 30
    for record in records[:10]:
        assert record.document.id not in {h.id for h in backend.search(record.vector, k=K)}
    backend.delete([])
    assert backend.count() == 30


def _exact_top(exact: MemoryBackend, query: SparseVector) -> list[SearchHit]:
    return exact.search(query, k=K)


def test_search_matches_the_exact_dot_product(
    harness: Harness, records: list[Record], query_vectors: list[SparseVector]
) -> None:
    backend = harness.make()
    backend.ensure_schema()
    backend.write(records)
    exact = MemoryBackend()
    exact.write(records)
    vectors = {r.document.id: r.vector for r in records}
    overlaps, errors, strict_overlaps = [], [], []
    for query in query_vectors:
        got, want = backend.search(query, k=K), _exact_top(exact, query)
        assert len(got) == len(want) == K
        assert [h.score for h in got] == sorted((h.score for h in got), reverse=True)
        for hit in got:
            assert set(hit.payload) == {"doc_id", "text", "metadata"} and hit.payload["doc_id"] == hit.id
            true = vectors[hit.id].dot(query)
            errors.append(abs(hit.score - true) / true)
        want_ids = {h.id for h in want}
        strict_overlaps.append(len(want_ids & {h.id for h in got}) / K)
        if harness.quantized:
            # A hit outside the exact top 10 is an equally good answer when its exact score ties the
            # 10th within what 9-bit storage can resolve (two stored values, 2**-8 each).
            cutoff = want[-1].score * (1 - 2 * QUANTIZATION)
            good = sum(1 for h in got if h.id in want_ids or vectors[h.id].dot(query) >= cutoff)
            overlaps.append(good / K)
        else:
            assert [h.id for h in got] == [h.id for h in want]
            for g, w in zip(got, want, strict=True):
                assert g.score == pytest.approx(w.score, rel=1e-4, abs=1e-4)
    print(
        f"\n{harness.name}: {len(query_vectors)} queries, overlap@10 {np.mean(strict_overlaps):.4f} "
        f"(tie-aware {np.mean(overlaps or strict_overlaps):.4f}), max relative score error {max(errors):.5f}"
    )
    if harness.quantized:
        assert np.mean(overlaps) >= MIN_OVERLAP
        assert max(errors) <= MAX_REL_ERROR


@pytest.mark.parametrize("harness", SCHEMA_BACKENDS, indirect=True)
def test_an_existing_schema_that_differs_is_refused(harness: Harness) -> None:
    assert harness.mismatch is not None
    created_with, opened_with = harness.mismatch
    first = harness.make(**created_with)
    first.ensure_schema()
    first.ensure_schema()  # the same schema again is fine
    first.close()  # embedded Qdrant allows one client per storage directory
    other = harness.make(**opened_with)
    with pytest.raises(SchemaMismatchError, match="exists with another schema"):
        other.ensure_schema()


def _bad_writes(records: list[Record]) -> list[tuple[Any, type[Exception]]]:
    one = records[0]
    empty = Record(Document("empty", "text"), SparseVector.from_lists([], []))
    return [
        ([one, one], InputError),  # the same id twice in one write
        ([one, empty], InputError),  # an empty vector: a document no query can find
        ([one, ("id", {1: 1.0})], TypeError),  # not a Record
        ([Record(one.document, {1: 1.0})], TypeError),  # type: ignore[arg-type]  # not a SparseVector
    ]


def test_bad_vectors_are_refused_before_any_network_call(harness: Harness, records: list[Record]) -> None:
    backend = harness.unreachable()  # any request would fail with BackendUnavailableError instead
    try:
        for batch, error in _bad_writes(records):
            with pytest.raises(error):
                backend.write(batch)
        with pytest.raises(TypeError):
            backend.search({1: 1.0}, k=K)  # type: ignore[arg-type]
        for k in (0, -1, True, 2.5):
            with pytest.raises(ValueError):
                backend.search(records[0].vector, k=k)  # type: ignore[arg-type]
    finally:
        backend.close()


def test_bad_values_cannot_even_be_built() -> None:
    """Zero, negative and non-finite weights never reach a backend: SparseVector refuses them."""
    for value in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            SparseVector.from_lists([1, 2], [1.0, value]) if value != 0.0 else SparseVector.from_lists(
                [1], [0.0]
            )


def test_batch_search_equals_one_search_per_query(
    harness: Harness, records: list[Record], query_vectors: list[SparseVector]
) -> None:
    """``search_batch`` (one round trip: ``query_batch_points`` / ``_msearch``) == ``search`` per query."""
    from sparsebridge.backends.base import SupportsBatchSearch

    backend = harness.make()
    backend.ensure_schema()
    backend.write(records)
    assert isinstance(backend, SupportsBatchSearch)
    batched = backend.search_batch([*query_vectors, SparseVector.from_dict({})], k=K)
    assert batched[-1] == []  # an empty query finds nothing
    for query, hits in zip(query_vectors, batched, strict=False):
        assert [(h.id, h.score, dict(h.payload)) for h in hits] == [
            (h.id, h.score, dict(h.payload)) for h in backend.search(query, k=K)
        ]
