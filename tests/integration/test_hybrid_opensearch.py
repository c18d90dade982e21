"""Search side of the OpenSearch adapter on the live node: _msearch, BM25, hybrid, evaluation.

The node (``scripts/opensearch.sh``) has no neural-search plugin: hybrid here is the ``_msearch`` of
the legs and client-side fusion. Without the k-NN plugin a dense leg must fail clearly (with it, the
dense leg is tested in ``test_dense_opensearch.py``). The
Elasticsearch adapter's search bodies (``_msearch`` lines, ``match``, ``rank_feature``) run on the
same node through an OpenSearch client (the DSL is shared; no Elasticsearch server runs here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_checks import sparse_swaps_within_quantization

from es_on_opensearch import es_bodies_on_opensearch
from sparsebridge.backends import (
    ClusterTarget,
    FieldType,
    MemoryBackend,
    OpenSearchBackend,
    Record,
)
from sparsebridge.backends.lucene import adapter as cluster_module
from sparsebridge.encoder import Encoder
from sparsebridge.errors import BackendError, InputError
from sparsebridge.eval import BeirDataset, EvalReport, run_eval
from sparsebridge.query import Fusion, FusionMethod, HybridQuery
from sparsebridge.query.fusion import fuse
from sparsebridge.types import Document, SparseVector

DATASET = Path(__file__).parents[1] / "data" / "minibeir"
CANDIDATES = 20
QUANTIZATION = 2**-8  # one stored rank_features value's worst relative error (9 significant bits)
# The documented bound on |backend - exact| per metric for rank_features backends: the stored
# values move scores by at most QUANTIZATION (relative), which can only swap near-ties.
METRIC_BOUND = 0.01


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def evaluated(
    opensearch_url: str, encoder: Encoder, dataset: BeirDataset
) -> Iterator[tuple[OpenSearchBackend, EvalReport]]:
    backend = OpenSearchBackend(ClusterTarget(unique("hybrid-os"), url=opensearch_url), replicas=0)
    report = run_eval(dataset, encoder=encoder, backend=backend)
    yield backend, report
    backend.client.indices.delete(index=backend.target.index, ignore_unavailable=True)
    backend.close()


@pytest.fixture(scope="module")
def exact(encoder: Encoder, dataset: BeirDataset) -> MemoryBackend:
    """The exact reference over the same vectors run_eval wrote (the encoder is deterministic)."""
    documents = list(dataset.corpus.values())
    reference = MemoryBackend()
    vectors = encoder.encode_documents([d.text for d in documents])
    reference.write([Record(d, v) for d, v in zip(documents, vectors, strict=True)])
    return reference


def test_eval_on_opensearch_is_within_quantization_and_has_bm25(
    evaluated: tuple[OpenSearchBackend, EvalReport],
) -> None:
    _, report = evaluated
    assert report.backend == "opensearch"
    assert set(report.modes) == {"sparse", "bm25", "hybrid"}  # no dense leg without k-NN
    assert set(report.exact) == {"sparse", "hybrid"}  # BM25 has no exact reference
    differences = report.differences()
    print(f"\nopensearch - exact: {json.dumps(differences)}")
    for mode in ("sparse", "hybrid"):
        for metric, difference in differences[mode].items():
            assert abs(difference) <= METRIC_BOUND, (mode, metric, difference)
    assert 0.5 < report.modes["sparse"]["ndcg@10"] <= 1.0
    assert 0.5 < report.modes["bm25"]["ndcg@10"] <= 1.0
    assert set(report.modes["bm25"]) == {"ndcg@10", "mrr@10", "recall@100", "map@100"}
    assert {"ingest", "sparse", "bm25", "hybrid", "exact_hybrid"} <= set(report.timings)


def test_sparse_results_differ_from_exact_only_by_quantization(
    evaluated: tuple[OpenSearchBackend, EvalReport], exact: MemoryBackend, sparse_queries: list[SparseVector]
) -> None:
    backend, _ = evaluated
    swaps = sparse_swaps_within_quantization(
        backend.search_batch(sparse_queries, k=100), exact, sparse_queries, k=100
    )
    print(f"\n{len(sparse_queries)} queries: {swaps} adjacent near-tie swaps against exact order")


@pytest.mark.parametrize(
    "fusion",
    [
        Fusion(FusionMethod.RRF, k=60),
        Fusion(FusionMethod.RRF, k=0, weights=(2.0, 1.0)),
        Fusion(FusionMethod.DBSF),
        Fusion(FusionMethod.MINMAX, weights=(0.7, 0.3)),
        Fusion(FusionMethod.ZSCORE),
        Fusion(FusionMethod.SUM, weights=(1.0, 0.1)),
    ],
    ids=["rrf-k60", "rrf-k0-weighted", "dbsf", "minmax", "zscore", "sum"],
)
def test_hybrid_equals_client_side_fusion_of_the_backends_own_legs(
    evaluated: tuple[OpenSearchBackend, EvalReport],
    sparse_queries: list[SparseVector],
    texts: list[str],
    fusion: Fusion,
) -> None:
    backend, _ = evaluated
    queries = [
        HybridQuery(sparse=s, text=t, candidates=CANDIDATES)
        for s, t in zip(sparse_queries, texts, strict=True)
    ]
    got = backend.search_hybrid_batch(queries, fusion, k=30)
    sparse = backend.search_batch(sparse_queries, k=CANDIDATES)
    bm25 = backend.search_text_batch(texts, k=CANDIDATES)
    for hits, s, t in zip(got, sparse, bm25, strict=True):
        assert s and t
        want = fuse([s, t], fusion, limit=30)
        assert [(h.id, h.score) for h in hits] == [(h.id, h.score) for h in want]


def test_many_queries_per_msearch_request(
    evaluated: tuple[OpenSearchBackend, EvalReport],
    sparse_queries: list[SparseVector],
    texts: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend, _ = evaluated
    one_by_one = [backend.search(q, k=10) for q in sparse_queries]
    requests: list[int] = []
    send = backend.client.msearch

    def counting(*, body: list[dict[str, Any]], index: str) -> Any:
        requests.append(len(body) // 2)
        return send(body=body, index=index)

    monkeypatch.setattr(backend.client, "msearch", counting)
    batched = backend.search_batch(sparse_queries, k=10)
    assert requests == [len(sparse_queries)]  # every query in one round trip
    assert [[(h.id, h.score) for h in q] for q in batched] == [
        [(h.id, h.score) for h in q] for q in one_by_one
    ]
    whole = backend.search_text_batch(texts, k=10)
    requests.clear()
    monkeypatch.setattr(cluster_module, "MSEARCH_BATCH", 6)  # bodies per _msearch request
    assert backend.search_text_batch(texts, k=10) == whole
    assert requests == [6, 6, 6, 2]
    hybrid = [HybridQuery(sparse=s, text=t, candidates=5) for s, t in zip(sparse_queries, texts, strict=True)]
    requests.clear()
    backend.search_hybrid_batch(hybrid, Fusion(), k=5)
    assert sum(requests) == 2 * len(texts) and max(requests) == 6  # both legs of every query


def test_bm25_leg_reads_the_text_field(evaluated: tuple[OpenSearchBackend, EvalReport]) -> None:
    backend, _ = evaluated
    [hits, none] = backend.search_text_batch(["iron oxide rust", "zzzqqq"], k=3)
    assert none == []
    assert "rust" in hits[0].payload["text"] and set(hits[0].payload) == {"doc_id", "text", "metadata"}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    with pytest.raises(ValueError, match="non-blank"):
        backend.search_text_batch(["  "], k=3)
    with pytest.raises(TypeError, match="list of query texts"):
        backend.search_text_batch("mars", k=3)


def test_elasticsearch_adapter_search_side_on_the_same_node(
    evaluated: tuple[OpenSearchBackend, EvalReport],
    opensearch_url: str,
    sparse_queries: list[SparseVector],
    texts: list[str],
) -> None:
    backend, _ = evaluated
    es = es_bodies_on_opensearch(
        ClusterTarget(backend.target.index, url=opensearch_url), field_type=FieldType.RANK_FEATURES
    )
    try:
        es.ensure_schema()  # the existing index has the fields the ES adapter needs
        assert es.search_batch(sparse_queries, k=20) == backend.search_batch(sparse_queries, k=20)
        assert es.search_text_batch(texts, k=20) == backend.search_text_batch(texts, k=20)
        queries = [
            HybridQuery(sparse=s, text=t, candidates=15) for s, t in zip(sparse_queries, texts, strict=True)
        ]
        for fusion in (Fusion(FusionMethod.RRF, k=60), Fusion(FusionMethod.MINMAX)):  # licensed=False
            assert es.search_hybrid_batch(queries, fusion, k=10) == backend.search_hybrid_batch(
                queries, fusion, k=10
            )
    finally:
        es.close()


def test_no_dense_leg_without_the_knn_plugin_and_it_says_so(opensearch_without_knn_url: str) -> None:
    import opensearchpy

    opensearch_url = opensearch_without_knn_url
    index = unique("dense-os")
    client = opensearchpy.OpenSearch(hosts=[opensearch_url])
    # Why the adapter checks first: this node cannot even map a knn_vector field.
    with pytest.raises(opensearchpy.exceptions.RequestError, match="knn_vector"):
        client.indices.create(index=index, body={"mappings": {"properties": {"d": {"type": "knn_vector"}}}})
    dense = OpenSearchBackend(ClusterTarget(index, url=opensearch_url), replicas=0, dense_size=4)
    plain = OpenSearchBackend(ClusterTarget(index, url=opensearch_url), replicas=0)
    try:
        assert "opensearch-knn" not in dense.plugins()
        with pytest.raises(BackendError, match="no k-NN plugin"):
            dense.ensure_schema()
        assert not client.indices.exists(index=index)  # nothing was created
        with pytest.raises(BackendError, match="no k-NN plugin"):
            dense.search_dense_batch([[0.1, 0.2, 0.3, 0.4]], k=3)  # type: ignore[list-item]
        query = HybridQuery(sparse=SparseVector.from_dict({3: 1.0}), dense=[0.1, 0.2, 0.3, 0.4])  # type: ignore[arg-type]
        with pytest.raises(BackendError, match="no k-NN plugin"):
            dense.search_hybrid_batch([query], Fusion(), k=3)
        with pytest.raises(ValueError, match="'dense' field does not exist"):
            plain.search_hybrid_batch([query], Fusion(), k=3)
        plain.ensure_schema()
        record = Record(Document("a", "t"), SparseVector.from_dict({3: 1.0}), [1.0, 0.0, 0.0, 0.0])  # type: ignore[arg-type]
        with pytest.raises(InputError, match="field does not exist"):
            plain.write([record])  # refused, never silently dropped
        assert plain.count() == 0
        host = urllib.parse.urlsplit(opensearch_url).netloc
        done = run_cli(
            "eval", "--dataset", str(DATASET), "--model", "splade-tiny", "--dense-model", "minilm",
            "--to", f"opensearch://{host}/{unique('eval-dense-os')}", "--device", "cpu",
        )  # fmt: skip
        assert done.returncode == 1 and "no k-NN plugin" in done.stderr, done.stderr
    finally:
        client.indices.delete(index=index, ignore_unavailable=True)
        client.close()
        dense.close()
        plain.close()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "sparsebridge.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)


def test_eval_cli_on_opensearch_then_hybrid_search_cli(opensearch_url: str, tmp_path: Path) -> None:
    import opensearchpy

    host = urllib.parse.urlsplit(opensearch_url).netloc
    index = unique("eval-cli-os")
    target = f"opensearch://{host}/{index}"
    output = tmp_path / "results.json"
    try:
        done = run_cli(
            "eval", "--dataset", str(DATASET), "--model", "splade-tiny", "--to", target,
            "--output", str(output), "--device", "cpu", "--fusion", "rrf", "--rrf-k", "60",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "bm25" in done.stdout and "diff" in done.stdout
        result = json.loads(output.read_text())
        assert result["backend"] == "opensearch"
        assert set(result["modes"]) == {"sparse", "bm25", "hybrid"}
        for mode in ("sparse", "hybrid"):
            for metric, value in result["modes"][mode].items():
                assert abs(value - result["exact"][mode][metric]) <= METRIC_BOUND
        done = run_cli(
            "search", "--model", "splade-tiny", "--to", target, "--device", "cpu",
            "--hybrid", "--bm25", "--fusion", "rrf", "-k", "3", "why is mars red",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0].split()[2].startswith("mars-")
    finally:
        client = opensearchpy.OpenSearch(hosts=[opensearch_url])
        client.indices.delete(index=index, ignore_unavailable=True)
        client.close()
