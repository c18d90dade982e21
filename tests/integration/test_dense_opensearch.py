"""The dense leg on a live OpenSearch node with the k-NN plugin (Lucene engine, no native library).

These tests need a node started with ``OPENSEARCH_PLUGINS=knn`` (``make test`` runs them on its
k-NN nodes; see the Makefile). The reference is the exact in-memory backend: cosine similarity
over the same MiniLM vectors. HNSW is approximate in general; on this corpus (140 documents) the
knn clause's beam of ``max(2k, 100)`` candidates finds the exact neighbours, which is asserted.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from live_checks import COSINE_TOLERANCE, assert_same_fused_hits, recall, run_cli, unique

from sparsebridge.backends import ClusterTarget, MemoryBackend, OpenSearchBackend, Record
from sparsebridge.encoder.dense import DenseEncoder
from sparsebridge.errors import SchemaMismatchError
from sparsebridge.query import Fusion, FusionMethod, HybridQuery
from sparsebridge.query.fusion import fuse
from sparsebridge.types import SparseVector

DATASET = Path(__file__).parents[1] / "data" / "minibeir"
CANDIDATES = 20
METRIC_BOUND = 0.01  # sparse and hybrid: rank_features keeps 9 significant bits (near-ties may swap)


@pytest.fixture(scope="module")
def indexed(
    opensearch_knn_url: str, records: list[Record], dense: DenseEncoder
) -> Iterator[OpenSearchBackend]:
    backend = OpenSearchBackend(
        ClusterTarget(unique("dense-os"), url=opensearch_knn_url), replicas=0, dense_size=dense.dimension
    )
    backend.ensure_schema()
    for start in range(0, len(records), 40):  # several segments, as a real index has
        backend.write(records[start : start + 40])
    yield backend
    backend.client.indices.delete(index=backend.target.index, ignore_unavailable=True)
    backend.close()


def test_the_knn_vector_field_is_lucene_hnsw_and_a_foreign_one_is_refused(
    opensearch_knn_url: str, dense: DenseEncoder
) -> None:
    import opensearchpy

    client = opensearchpy.OpenSearch(hosts=[opensearch_knn_url])
    index, foreign = unique("dense-schema"), unique("dense-foreign")
    mine = OpenSearchBackend(
        ClusterTarget(index, url=opensearch_knn_url), replicas=0, dense_size=dense.dimension
    )
    again = OpenSearchBackend(ClusterTarget(index, url=opensearch_knn_url), dense_size=dense.dimension)
    smaller = OpenSearchBackend(ClusterTarget(index, url=opensearch_knn_url), dense_size=128)
    other = OpenSearchBackend(ClusterTarget(foreign, url=opensearch_knn_url), dense_size=dense.dimension)
    try:
        mine.ensure_schema()
        field = client.indices.get_mapping(index=index)[index]["mappings"]["properties"]["dense"]
        assert field["type"] == "knn_vector" and field["dimension"] == dense.dimension
        assert {k: field["method"][k] for k in ("name", "engine", "space_type")} == {
            "name": "hnsw",
            "engine": "lucene",
            "space_type": "cosinesimil",
        }
        again.ensure_schema()  # the mapping as the node reads it back is this backend's own
        with pytest.raises(SchemaMismatchError, match="dimension 384, wanted 128"):
            smaller.ensure_schema()
        # A knn_vector mapped without a method takes the node's default engine (faiss): the first
        # write to it would kill a node without the native libraries. Refused before any write.
        body = {
            "settings": {"index": {"knn": True, "number_of_replicas": 0}},
            "mappings": {"properties": {"dense": {"type": "knn_vector", "dimension": dense.dimension}}},
        }
        client.indices.create(index=foreign, body=body)
        with pytest.raises(SchemaMismatchError, match=r"engine \(default\)"):
            other.ensure_schema()
        assert client.count(index=foreign)["count"] == 0
    finally:
        for name in (index, foreign):
            client.indices.delete(index=name, ignore_unavailable=True)
        for backend in (mine, again, smaller, other):
            backend.close()
        client.close()


@pytest.mark.parametrize("k", [10, 100])
def test_dense_leg_finds_the_exact_cosine_neighbours(
    indexed: OpenSearchBackend, exact: MemoryBackend, dense_queries: list[npt.NDArray[np.float32]], k: int
) -> None:
    got_all = indexed.search_dense_batch(dense_queries, k=k)
    want_all = exact.search_dense_batch(dense_queries, k=k)
    recalls = [recall(g, w) for g, w in zip(got_all, want_all, strict=True)]
    print(f"\nknn leg recall@{k} against exact cosine over {len(recalls)} queries: {np.mean(recalls):.4f}")
    for query, got, want in zip(dense_queries, got_all, want_all, strict=True):
        true = {h.id: h.score for h in exact.search_dense_batch([query], k=10_000)[0]}
        assert len(got) == len(want) == k
        assert {h.id for h in got} == {h.id for h in want}  # recall@k is 1 on this corpus
        for g, w in zip(got, want, strict=True):  # the i-th best score, and each hit's own cosine
            assert g.score == pytest.approx(w.score, abs=COSINE_TOLERANCE)
            assert g.score == pytest.approx(true[g.id], abs=COSINE_TOLERANCE)
        assert set(got[0].payload) == {"doc_id", "text", "metadata"}


@pytest.mark.parametrize(
    "fusion",
    [
        Fusion(FusionMethod.RRF, k=60),
        Fusion(FusionMethod.DBSF),
        Fusion(FusionMethod.MINMAX, weights=(1.0, 2.0, 0.5)),
    ],
    ids=["rrf-k60", "dbsf", "minmax-weighted"],
)
def test_sparse_dense_bm25_hybrid_is_client_side_fusion_of_the_live_legs(
    indexed: OpenSearchBackend,
    exact: MemoryBackend,
    sparse_queries: list[SparseVector],
    dense_queries: list[npt.NDArray[np.float32]],
    texts: list[str],
    fusion: Fusion,
) -> None:
    queries = [
        HybridQuery(sparse=s, dense=d, text=t, candidates=CANDIDATES)
        for s, d, t in zip(sparse_queries, dense_queries, texts, strict=True)
    ]
    got = indexed.search_hybrid_batch(queries, fusion, k=30)
    sparse = indexed.search_batch(sparse_queries, k=CANDIDATES)
    dense_leg = indexed.search_dense_batch(dense_queries, k=CANDIDATES)
    bm25 = indexed.search_text_batch(texts, k=CANDIDATES)
    for query, hits, s, d, t in zip(queries, got, sparse, dense_leg, bm25, strict=True):
        assert s and d and t
        want = fuse([s, d, t], fusion, limit=30)
        assert_same_fused_hits(hits, want)
        exact_dense = exact.exact_legs(query, text_leg=t)[1]  # the dense leg is the exact one
        assert {h.id for h in d} == {h.id for h in exact_dense}


def test_eval_cli_with_a_dense_model_on_opensearch_equals_exact(
    opensearch_knn_url: str, tmp_path: Path
) -> None:
    import opensearchpy

    index = unique("eval-dense-os")
    target = f"opensearch://{urllib.parse.urlsplit(opensearch_knn_url).netloc}/{index}"
    output = tmp_path / "results.json"
    try:
        done = run_cli(
            "eval", "--dataset", str(DATASET), "--model", "splade-tiny", "--dense-model", "minilm",
            "--to", target, "--output", str(output), "--device", "cpu", "--fusion", "rrf", "--rrf-k", "60",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        result = json.loads(output.read_text())
        print(f"\n{done.stdout}")
        assert result["backend"] == "opensearch"
        assert set(result["modes"]) == {"sparse", "dense", "bm25", "hybrid"}
        assert set(result["exact"]) == {"sparse", "dense", "hybrid"}
        assert result["modes"]["dense"] == result["exact"]["dense"]  # exact neighbours: identical metrics
        for mode in ("sparse", "hybrid"):
            for metric, value in result["modes"][mode].items():
                assert abs(value - result["exact"][mode][metric]) <= METRIC_BOUND, (mode, metric)
        assert 0.5 < result["modes"]["dense"]["ndcg@10"] <= 1.0
    finally:
        client = opensearchpy.OpenSearch(hosts=[opensearch_knn_url])
        client.indices.delete(index=index, ignore_unavailable=True)
        client.close()
