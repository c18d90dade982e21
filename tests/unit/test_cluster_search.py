"""The search side of the OpenSearch/Elasticsearch adapters, as data: what each call would send.

A recording client stands in for the engine. It checks the request bodies and the choice between
client-side fusion (``_msearch`` of the legs) and the native paths that cannot run on the test
node: the neural-search ``hybrid`` query + search pipeline (only when ``GET _cat/plugins`` lists
the plugin) and the Elasticsearch ``rrf`` / ``linear`` retrievers (only with ``licensed=True``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import elasticsearch as elasticsearch_py
import numpy as np
import pytest

from sparsebridge.backends import (
    ClusterTarget,
    ElasticsearchBackend,
    FieldType,
    OpenSearchBackend,
    Record,
)
from sparsebridge.backends.elasticsearch import bodies as es
from sparsebridge.backends.lucene import bodies
from sparsebridge.backends.lucene.bulk import ItemResult
from sparsebridge.backends.opensearch import OpenSearchHybrid
from sparsebridge.backends.opensearch import bodies as os_
from sparsebridge.errors import InputError
from sparsebridge.query import Fusion, FusionMethod, HybridQuery
from sparsebridge.types import Document, SparseVector

CLIENT_MAJOR = int(elasticsearch_py.__versionstr__.split(".")[0])
SPARSE = SparseVector.from_dict({7: 0.5, 3: 1.25})
SPARSE_CLAUSE = {
    "bool": {
        "should": [
            {"rank_feature": {"field": "splade.3", "linear": {}, "boost": 1.25}},
            {"rank_feature": {"field": "splade.7", "linear": {}, "boost": 0.5}},
        ]
    }
}
SOURCE = {"track_total_hits": False, "_source": ["doc_id", "text", "metadata"]}
MATCH = {"match": {"text": {"query": "red planet"}}}


def hit(doc_id: str, score: float) -> dict[str, Any]:
    return {"_score": score, "_source": {"doc_id": doc_id, "text": doc_id, "metadata": {}}}


@dataclass
class Recorder:
    """A stand-in client: records every call and answers with canned hits."""

    plugins: list[str] = field(default_factory=list)
    wrapped: bool = False  # answer raw requests as elasticsearch-py's transport does
    _headers: dict[str, str] = field(default_factory=dict)  # elasticsearch-py's client headers
    answer: list[dict[str, Any]] = field(default_factory=lambda: [hit("b", 0.9), hit("a", 0.9)])
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.transport = SimpleNamespace(perform_request=self.perform_request)

    def perform_request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.calls.append((f"{method} {path}", kwargs))
        if path == "/_cat/plugins":
            return [{"name": "node", "component": p, "version": "2.19.4"} for p in self.plugins]
        body: dict[str, Any] = {"acknowledged": True}
        if path == "/":  # the Elasticsearch adapter's version check
            body = {"version": {"number": f"{CLIENT_MAJOR}.19.3"}}
        if self.wrapped:  # elasticsearch-py's transport answers (meta, body) for every status
            return SimpleNamespace(meta=SimpleNamespace(status=200), body=body)
        return body

    def msearch(self, *, body: list[dict[str, Any]], index: str) -> dict[str, Any]:
        self.calls.append(("msearch", body))
        return {"responses": [{"hits": {"hits": self.answer}} for _ in body[1::2]]}

    def search(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("search", kwargs))
        return {"hits": {"hits": self.answer}}

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def opensearch(client: Recorder, **options: Any) -> OpenSearchBackend:
    return OpenSearchBackend(ClusterTarget("docs", url="http://localhost:9200"), client=client, **options)  # type: ignore[arg-type]


def elasticsearch(client: Recorder, **options: Any) -> ElasticsearchBackend:
    client.wrapped = True
    target = ClusterTarget("docs", url="http://localhost:9200")
    return ElasticsearchBackend(target, client=client, field_type=FieldType.RANK_FEATURES, **options)  # type: ignore[arg-type]


def test_dense_field_mappings() -> None:
    assert os_.knn_vector_mapping(384) == {
        "type": "knn_vector",
        "dimension": 384,
        "method": {"name": "hnsw", "space_type": "cosinesimil", "engine": "lucene"},
    }
    assert es.dense_vector_mapping(384) == {
        "type": "dense_vector",
        "dims": 384,
        "index": True,
        "similarity": "cosine",
        "index_options": {"type": "hnsw"},  # not the int8-quantized default of 8.14+
    }
    body = opensearch(Recorder(), dense_size=384).index_body()
    assert body["mappings"]["properties"]["dense"] == os_.knn_vector_mapping(384)
    assert body["settings"] == {"index": {"knn": True}}
    body = elasticsearch(Recorder(), dense_size=8, dense_field="emb", replicas=0).index_body()
    assert body["mappings"]["properties"]["emb"] == es.dense_vector_mapping(8)
    assert body["settings"] == {"index": {"number_of_replicas": 0}}
    assert "dense" not in opensearch(Recorder()).index_body()["mappings"]["properties"]
    for bad in (0, -3, True):
        with pytest.raises(ValueError):
            os_.knn_vector_mapping(bad)
        with pytest.raises(ValueError, match="dense_size"):
            opensearch(Recorder(), dense_size=bad)
    with pytest.raises(ValueError, match="dense field name"):
        opensearch(Recorder(), dense_size=2, dense_field="splade")


def test_msearch_lines_with_source_and_pipeline_names() -> None:
    assert bodies.msearch_body("docs", [MATCH], size=5, source=["doc_id"]) == [
        {"index": "docs"},
        {"size": 5, "query": MATCH, "track_total_hits": False, "_source": ["doc_id"]},
    ]
    knn = es.knn_section([1.0, 0.0], k=5)
    assert bodies.msearch_body("docs", [knn], size=5, source=["doc_id"]) == [
        {"index": "docs"},
        {"size": 5, "knn": knn, "track_total_hits": False, "_source": ["doc_id"]},
    ]
    rrf = os_.search_pipeline_body(Fusion(FusionMethod.RRF, k=60), legs=2)
    assert os_.pipeline_name(rrf) == os_.pipeline_name(dict(rrf))
    assert os_.pipeline_name(rrf) != os_.pipeline_name(os_.search_pipeline_body(Fusion(k=61), legs=2))
    assert os_.pipeline_name(rrf).startswith("sparsebridge-")
    assert os_.has_search_pipeline(Fusion(FusionMethod.MINMAX, weights=(2.0, 1.0)))
    assert not os_.has_search_pipeline(Fusion(FusionMethod.RRF, weights=(2.0, 1.0)))
    assert not os_.has_search_pipeline(Fusion(FusionMethod.DBSF))


def test_batches_are_one_msearch_with_every_leg() -> None:
    client = Recorder()
    backend = opensearch(client)
    empty = SparseVector.from_dict({})
    [first, nothing] = backend.search_batch([SPARSE, empty], k=5)
    assert nothing == [] and [h.id for h in first] == ["b", "a"]  # the engine's order, as sent
    [(name, lines)] = client.calls
    assert name == "msearch" and lines == [{"index": "docs"}, {"size": 5, "query": SPARSE_CLAUSE, **SOURCE}]
    client.calls.clear()
    query = HybridQuery(sparse=SPARSE, text="red planet", candidates=7)
    [fused] = backend.search_hybrid_batch([query, query], Fusion(FusionMethod.RRF, k=60), k=3)[:1]
    [(name, lines)] = client.calls  # both queries, both legs: one round trip
    assert name == "msearch"
    assert lines[1::2] == [{"size": 7, "query": c, **SOURCE} for c in (SPARSE_CLAUSE, MATCH)] * 2
    assert [(h.id, h.score) for h in fused] == [("b", 2 / 61), ("a", 2 / 62)]


def test_opensearch_native_hybrid_only_when_asked_and_the_plugin_is_there() -> None:
    query = HybridQuery(sparse=SPARSE, text="red planet", candidates=7)
    fusion = Fusion(FusionMethod.MINMAX, weights=(3.0, 1.0))
    client = Recorder(plugins=["opensearch-neural-search"])
    opensearch(client).search_hybrid_batch([query], fusion, k=3)
    assert client.names() == ["msearch"]  # default: client-side, no plugin check at all
    client = Recorder(plugins=["opensearch-neural-search"])
    [hits] = opensearch(client, hybrid=OpenSearchHybrid.NATIVE_IF_AVAILABLE).search_hybrid_batch(
        [query], fusion, k=3
    )
    pipeline = os_.search_pipeline_body(fusion, legs=2)
    name = os_.pipeline_name(pipeline)
    assert client.names() == ["GET /_cat/plugins", f"PUT /_search/pipeline/{name}", "search"]
    assert client.calls[1][1] == {"body": pipeline}
    assert client.calls[2][1] == {
        "index": "docs",
        "body": {"size": 7, "query": {"hybrid": {"queries": [SPARSE_CLAUSE, MATCH]}}, **SOURCE},
        "params": {"search_pipeline": name},
    }
    assert [h.id for h in hits] == ["a", "b"]  # the engine's tie re-sorted with our tie-break
    for plugins, other in (([], fusion), (["opensearch-neural-search"], Fusion(FusionMethod.DBSF))):
        client = Recorder(plugins=plugins)
        opensearch(client, hybrid=OpenSearchHybrid.NATIVE_IF_AVAILABLE).search_hybrid_batch(
            [query], other, k=3
        )
        assert client.names()[-1] == "msearch" and "search" not in client.names()


def test_elasticsearch_retrievers_only_with_licensed() -> None:
    query = HybridQuery(sparse=SPARSE, text="red planet", candidates=7)
    client = Recorder()
    elasticsearch(client).search_hybrid_batch([query], Fusion(FusionMethod.RRF, k=60), k=3)
    # open: the version, then whether the node parses the rank_feature query; then one _msearch
    probe = f"POST /{es.PROBE_INDEX}/_search?allow_no_indices=true&ignore_unavailable=true"
    assert client.names() == ["GET /", probe, "msearch"]
    for fusion, build in (
        (Fusion(FusionMethod.RRF, k=60), es.rrf_retriever_body),
        (Fusion(FusionMethod.MINMAX), es.linear_retriever_body),
    ):
        client = Recorder()
        [hits] = elasticsearch(client, licensed=True).search_hybrid_batch([query], fusion, k=3)
        body = {**build([SPARSE_CLAUSE, MATCH], fusion, size=3, window=7, licensed=True), **SOURCE}
        assert client.calls[-1] == ("search", {"index": "docs", "body": body})
        assert [h.id for h in hits] == ["a", "b"]
    client = Recorder()
    elasticsearch(client, licensed=True).search_hybrid_batch([query], Fusion(FusionMethod.DBSF), k=3)
    assert client.names()[-1] == "msearch"


def test_dense_leg_bodies_and_cosine_scores() -> None:
    client = Recorder(answer=[hit("a", 0.9)])
    backend = elasticsearch(client, dense_size=2)
    [[only]] = backend.search_dense_batch([np.array([1.0, 0.0], dtype=np.float32)], k=4)
    assert only.score == pytest.approx(0.8)  # (1 + cos) / 2 = 0.9 -> cos 0.8
    lines = client.calls[-1][1]
    assert lines[1] == {"size": 4, "knn": es.knn_section([1.0, 0.0], k=4), **SOURCE}
    client = Recorder(plugins=["opensearch-knn"], answer=[hit("a", 0.25)])
    [[only]] = opensearch(client, dense_size=2).search_dense_batch(
        [np.array([0.0, 2.0], dtype=np.float32)], k=4
    )
    assert only.score == pytest.approx(-0.5)
    knn = {"knn": {"dense": {"vector": [0.0, 2.0], "k": 100}}}  # 4 hits from a beam of max(2k, 100)
    assert client.calls[-1][1][1] == {"size": 4, "query": knn, **SOURCE}
    with pytest.raises(ValueError, match="3-d"):
        opensearch(client, dense_size=2).search_dense_batch([np.ones(3, dtype=np.float32)], k=4)


def test_an_existing_dense_field_must_be_the_one_the_backend_maps() -> None:
    mapped = os_.knn_vector_mapping(3)
    as_read = {**mapped, "method": {**mapped["method"], "parameters": {}}}  # what the node answers
    assert os_.knn_field_problem(as_read, 3) is None
    assert os_.knn_field_problem(mapped, 4) == "dimension 3, wanted 4"
    assert os_.knn_field_problem(None, 3) == "type None, wanted 'knn_vector'"
    default_engine = {"type": "knn_vector", "dimension": 3}  # faiss: fatal without the native libraries
    assert "engine (default)" in str(os_.knn_field_problem(default_engine, 3))
    faiss = {**mapped, "method": {**mapped["method"], "engine": "faiss"}}
    assert "engine faiss" in str(os_.knn_field_problem(faiss, 3))
    l2 = {**mapped, "method": {**mapped["method"], "space_type": "l2"}}
    assert "space type l2" in str(os_.knn_field_problem(l2, 3))
    assert [os_.knn_candidates(k) for k in (1, 10, 50, 51, 100)] == [100, 100, 100, 102, 200]
    dialect = elasticsearch(Recorder(), dense_size=3).dialect
    assert dialect.dense_field_problem(es.dense_vector_mapping(3), 3) is None
    assert "wanted 'dense_vector' of 4" in str(dialect.dense_field_problem(es.dense_vector_mapping(3), 4))


def test_dense_records_are_written_or_refused_never_dropped() -> None:
    record = Record(Document("a", "text"), SPARSE, np.array([1.0, 2.0], dtype=np.float32))
    plain = OpenSearchBackend(ClusterTarget("docs", url="http://localhost:9200"))
    with pytest.raises(InputError, match="field does not exist"):
        plain.write([record])
    wrong = OpenSearchBackend(ClusterTarget("docs", url="http://localhost:9200"), dense_size=3)
    with pytest.raises(InputError, match="2-d dense vector"):
        wrong.write([record])
    assert plain._client is None and wrong._client is None  # refused before any client existed
    sent: list[str] = []

    def send(body: str) -> list[ItemResult]:
        sent.append(body)
        return [ItemResult(201)]

    backend = opensearch(Recorder(), dense_size=2)
    backend._send_bulk = send  # type: ignore[method-assign]
    backend.write([record])
    assert '"dense":[1.0,2.0]' in sent[0]
