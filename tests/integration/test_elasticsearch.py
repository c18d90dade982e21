"""The Elasticsearch adapter on a live node (scripts/elasticsearch.sh; ``make test`` runs it).

The test node is Elasticsearch's integ-test distribution: it refuses ``GET /`` and has no
``rank_features`` field, so it is also the "Elasticsearch a user runs" that is not the full
distribution. The reference is the exact in-memory backend over the same vectors: the
``sparse_vector`` field keeps 9 significant bits per stored value, the dense leg is float32 HNSW.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from live_checks import (
    COSINE_TOLERANCE,
    QUANTIZATION,
    assert_same_fused_hits,
    recall,
    run_cli,
    sparse_swaps_within_quantization,
    unique,
)

from sparsebridge.backends import ClusterTarget, ElasticsearchBackend, FieldType, MemoryBackend, Record
from sparsebridge.backends.elasticsearch import SparseQuery
from sparsebridge.encoder.dense import DenseEncoder
from sparsebridge.errors import BackendError
from sparsebridge.query import Fusion, FusionMethod, HybridQuery
from sparsebridge.query.fusion import fuse
from sparsebridge.types import Document, SparseVector

DATASET = Path(__file__).parents[1] / "data" / "minibeir"
EXAMPLES = Path(__file__).parents[2] / "examples" / "sample_corpus.jsonl"
CANDIDATES = 20
METRIC_BOUND = 0.01  # |backend - exact| per metric: quantization can only swap near-ties


def http(url: str, path: str, body: Any = None, method: str | None = None) -> tuple[int, Any]:
    """A plain HTTP request to the node (no client library): (status, parsed body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def delete_index(url: str, index: str) -> None:
    http(url, f"/{index}", method="DELETE")


@pytest.fixture(scope="module")
def indexed(
    elasticsearch_url: str, records: list[Record], dense: DenseEncoder
) -> Iterator[ElasticsearchBackend]:
    backend = ElasticsearchBackend(
        ClusterTarget(unique("es-live"), url=elasticsearch_url), replicas=0, dense_size=dense.dimension
    )
    backend.ensure_schema()
    for start in range(0, len(records), 40):  # several segments, as a real index has
        backend.write(records[start : start + 40])
    yield backend
    delete_index(elasticsearch_url, backend.target.index)
    backend.close()


def node_version(url: str) -> str:
    _, nodes = http(url, "/_nodes/_local?filter_path=nodes.*.version")
    [version] = [n["version"] for n in nodes["nodes"].values()]
    return str(version)


def test_the_adapter_reads_the_node_and_picks_an_exact_query(
    indexed: ElasticsearchBackend, elasticsearch_url: str
) -> None:
    version = node_version(elasticsearch_url)
    status, _ = http(elasticsearch_url, "/")
    print(f"\nElasticsearch {version}: GET / answers {status}; the adapter: {indexed.describe()}")
    assert indexed.describe().startswith(f"Elasticsearch {version};")  # read even where GET / is refused
    assert indexed.sparse_query in (SparseQuery.SPARSE_VECTOR, SparseQuery.WEIGHTED_TOKENS)
    _, mapping = http(elasticsearch_url, f"/{indexed.target.index}/_mapping")
    properties = mapping[indexed.target.index]["mappings"]["properties"]
    assert properties["splade"] == {"type": "sparse_vector"}
    assert properties["dense"]["index_options"]["type"] == "hnsw"  # float32 HNSW, not int8_hnsw


def test_the_node_prunes_sparse_vector_queries_by_default_and_the_adapter_does_not(
    elasticsearch_url: str,
) -> None:
    """Token 7 is in every document with a small query weight: the node's default pruning drops it."""
    name = unique("es-prune")
    backend = ElasticsearchBackend(ClusterTarget(name, url=elasticsearch_url), replicas=0)
    try:
        backend.ensure_schema()
        backend.write(
            [
                Record(Document(f"d{i}", f"doc {i}"), SparseVector.from_dict({7: 1.0, 1000 + i: 1.0}))
                for i in range(40)
            ]
        )
        query = SparseVector.from_dict({7: 0.1, 1000: 1.0})
        hits = backend.search(query, k=50)
        assert len(hits) == 40  # every document holds token 7: each scores at least 0.1
        assert hits[0].id == "d0" and hits[0].score == pytest.approx(1.1, rel=QUANTIZATION)
        if backend.sparse_query is SparseQuery.SPARSE_VECTOR:
            body = backend.search_body(query, k=50)
            del body["query"]["sparse_vector"]["prune"]  # the node's default
            _, pruned = http(elasticsearch_url, f"/{name}/_search", body)
            print(f"\nwithout prune: false the node returns {len(pruned['hits']['hits'])} of 40 hits")
            assert len(pruned["hits"]["hits"]) < 40  # why the adapter sends prune: false
        weighted = ElasticsearchBackend(
            ClusterTarget(name, url=elasticsearch_url), sparse_query=SparseQuery.WEIGHTED_TOKENS
        )
        assert weighted.search(query, k=50) == hits  # the other exact form: the same hits and scores
        weighted.close()
    finally:
        delete_index(elasticsearch_url, name)
        backend.close()


def test_a_missing_rank_features_field_is_named(elasticsearch_url: str) -> None:
    status, _ = http(
        elasticsearch_url,
        "/sparsebridge-probe-no-such-index-*/_search",
        {"size": 0, "query": {"rank_feature": {"field": "x.1", "linear": {}}}},
    )
    if status == 200:
        pytest.skip("this node has the rank_features field (mapper-extras)")
    backend = ElasticsearchBackend(
        ClusterTarget(unique("es-rf"), url=elasticsearch_url), field_type=FieldType.RANK_FEATURES
    )
    with pytest.raises(BackendError, match=r"refused rank_feature \(the mapper-extras module\)"):
        backend.ensure_schema()
    backend.close()


def test_sparse_results_differ_from_exact_only_by_quantization(
    indexed: ElasticsearchBackend, exact: MemoryBackend, sparse_queries: list[SparseVector]
) -> None:
    got_all = indexed.search_batch(sparse_queries, k=100)
    for query, got in zip(sparse_queries, got_all, strict=True):  # one body, two paths
        assert [h.id for h in indexed.search(query, k=100)] == [h.id for h in got]
    swaps = sparse_swaps_within_quantization(got_all, exact, sparse_queries, k=100)
    print(f"\n{len(sparse_queries)} queries: {swaps} adjacent near-tie swaps against exact order")


@pytest.mark.parametrize("k", [10, 100])
def test_dense_leg_finds_the_exact_cosine_neighbours(
    indexed: ElasticsearchBackend,
    exact: MemoryBackend,
    dense_queries: list[npt.NDArray[np.float32]],
    k: int,
) -> None:
    got_all = indexed.search_dense_batch(dense_queries, k=k)
    want_all = exact.search_dense_batch(dense_queries, k=k)
    recalls = [recall(g, w) for g, w in zip(got_all, want_all, strict=True)]
    print(f"\nknn leg recall@{k} against exact cosine over {len(recalls)} queries: {np.mean(recalls):.4f}")
    for query, got, want in zip(dense_queries, got_all, want_all, strict=True):
        true = {h.id: h.score for h in exact.search_dense_batch([query], k=10_000)[0]}
        assert {h.id for h in got} == {h.id for h in want}  # recall@k is 1 on this corpus
        for g, w in zip(got, want, strict=True):
            assert g.score == pytest.approx(w.score, abs=COSINE_TOLERANCE)
            assert g.score == pytest.approx(true[g.id], abs=COSINE_TOLERANCE)


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
    indexed: ElasticsearchBackend,
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
        assert_same_fused_hits(hits, fuse([s, d, t], fusion, limit=30))
        exact_dense = exact.exact_legs(query, text_leg=t)[1]
        assert {h.id for h in d} == {h.id for h in exact_dense}


def test_cli_ingest_and_search_through_an_elasticsearch_uri(elasticsearch_url: str, tmp_path: Path) -> None:
    index = unique("es-cli")
    target = f"elasticsearch://{urllib.parse.urlsplit(elasticsearch_url).netloc}/{index}"
    try:
        done = run_cli(
            "ingest", "--model", "splade-tiny", "--input", str(EXAMPLES), "--to", target, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        assert "wrote" in done.stdout
        found = run_cli("search", "--model", "splade-tiny", "--to", target, "-k", "3", "which planet is red")
        assert found.returncode == 0, found.stderr
        assert "mars" in found.stdout.lower()
    finally:
        delete_index(elasticsearch_url, index)


def test_eval_cli_on_elasticsearch_is_within_quantization_of_exact(
    elasticsearch_url: str, tmp_path: Path
) -> None:
    index = unique("es-eval")
    target = f"elasticsearch://{urllib.parse.urlsplit(elasticsearch_url).netloc}/{index}"
    output = tmp_path / "results.json"
    try:
        done = run_cli(
            "eval", "--dataset", str(DATASET), "--model", "splade-tiny", "--dense-model", "minilm",
            "--to", target, "--output", str(output), "--device", "cpu", "--fusion", "rrf", "--rrf-k", "60",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        result = json.loads(output.read_text())
        print(f"\n{done.stdout}\nelasticsearch - exact: {json.dumps(result.get('exact'))}")
        assert result["backend"] == "elasticsearch"
        assert set(result["modes"]) == {"sparse", "dense", "bm25", "hybrid"}
        assert set(result["exact"]) == {"sparse", "dense", "hybrid"}
        assert result["modes"]["dense"] == result["exact"]["dense"]  # exact neighbours: identical metrics
        for mode in ("sparse", "hybrid"):
            for metric, value in result["modes"][mode].items():
                assert abs(value - result["exact"][mode][metric]) <= METRIC_BOUND, (mode, metric)
        assert 0.5 < result["modes"]["sparse"]["ndcg@10"] <= 1.0
    finally:
        delete_index(elasticsearch_url, index)
