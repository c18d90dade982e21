"""Tied scores on both Qdrant stores: the one order of :mod:`sparsebridge.query.fusion` (score, then id).

The corpus repeats each vector several times under different ids, written in reverse id order, so
every query meets ties inside the top k, across the cut-off at k, and across each hybrid leg's
candidate limit. Sparse and dense results must equal the exact reference
(:class:`~sparsebridge.backends.memory.MemoryBackend`) in ids; a hybrid result must equal the
fusion of the backend's own legs exactly (ids and scores), and for RRF, which uses ranks only,
the exact reference's too. (Score-based fusions of float32 leg scores cannot equal the float64
reference to the last bit: two documents whose fused scores are equal in exact arithmetic may
round either way.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sparsebridge.backends import (
    MemoryBackend,
    QdrantBackend,
    QdrantEdgeBackend,
    QdrantEdgeTarget,
    QdrantTarget,
    Record,
)
from sparsebridge.query import Fusion, FusionMethod, HybridQuery
from sparsebridge.query.fusion import fuse
from sparsebridge.types import Document, SearchHit, SparseVector

COPIES = 5  # each distinct vector is stored under this many ids
DISTINCT = 24


def _records() -> list[Record]:
    rng = np.random.default_rng(7)
    records = []
    for n in range(DISTINCT):
        dims = np.sort(rng.choice(40, 6, replace=False))
        sparse = SparseVector(dims, (rng.integers(1, 5, 6) / 4).astype(np.float32))
        dense = (rng.integers(-3, 4, 4) / 4 + np.array([2.0, 0, 0, 0])).astype(np.float32)
        for copy in range(COPIES):
            records.append(Record(Document(f"doc-{copy}-{n:02d}", "t", {"n": n}), sparse, dense))
    return sorted(records, key=lambda r: r.document.id, reverse=True)


RECORDS = _records()
QUERIES = [r.vector for r in RECORDS[:: 3 * COPIES]] + [
    SparseVector.from_dict({int(i): 1.0}) for i in range(8)
]
DENSE = [r.dense for r in RECORDS[1 :: 2 * COPIES] if r.dense is not None]
FUSIONS = [
    Fusion(FusionMethod.RRF, k=60),
    Fusion(FusionMethod.RRF, k=2),
    Fusion(FusionMethod.DBSF),
    Fusion(FusionMethod.SUM, weights=(1.0, 0.5)),
    Fusion(FusionMethod.RRF, k=60, weights=(2.0, 1.0)),
    Fusion(FusionMethod.MINMAX),
]


@pytest.fixture(params=["qdrant-local", "qdrant-edge"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[object, MemoryBackend]]:
    backend: QdrantBackend | QdrantEdgeBackend
    if request.param == "qdrant-local":
        backend = QdrantBackend(QdrantTarget("ties", path=str(tmp_path / "q")), dense_size=4)
    else:
        backend = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path / "edge"), "ties"), dense_size=4)
    exact = MemoryBackend()
    for b in (backend, exact):
        b.ensure_schema()
        b.write(RECORDS)
    yield backend, exact
    backend.close()


def _ids(results: list[list[object]]) -> list[list[str]]:
    return [[h.id for h in hits] for hits in results]  # type: ignore[attr-defined]


@pytest.mark.parametrize("k", [1, 4, 7, 12])
def test_sparse_and_dense_ties_are_ordered_by_id_at_every_cut_off(stores, k: int) -> None:  # type: ignore[no-untyped-def]
    backend, exact = stores
    assert _ids(backend.search_batch(QUERIES, k=k)) == _ids(exact.search_batch(QUERIES, k=k))
    assert _ids(backend.search_dense_batch(DENSE, k=k)) == _ids(exact.search_dense_batch(DENSE, k=k))


@pytest.mark.parametrize("fusion", FUSIONS, ids=lambda f: f"{f.method.value}{'-w' if f.weighted else ''}")
def test_hybrid_equals_the_exact_fusion_with_ties_in_every_leg(stores, fusion: Fusion) -> None:  # type: ignore[no-untyped-def]
    backend, exact = stores
    queries = [
        HybridQuery(sparse=s, dense=d, candidates=candidates)
        for s, d in zip(QUERIES, DENSE, strict=False)
        for candidates in (3, 8)
    ]
    got = backend.search_hybrid_batch(queries, fusion, k=6)
    legs = [
        [backend.search(q.sparse, k=q.candidates), *backend.search_dense_batch([q.dense], k=q.candidates)]
        for q in queries
    ]
    fused = [fuse(query_legs, fusion, limit=6) for query_legs in legs]
    assert _scored(got) == _scored(fused)
    if fusion.method is FusionMethod.RRF:  # rank-based: the exact reference to the last bit
        assert _scored(got) == _scored(exact.search_hybrid_batch(queries, fusion, k=6))


def _scored(results: list[list[SearchHit]]) -> list[list[tuple[str, float]]]:
    return [[(h.id, h.score) for h in hits] for hits in results]
