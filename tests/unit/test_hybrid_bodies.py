"""Snapshots of the hybrid request bodies (Qdrant, OpenSearch, Elasticsearch), built as data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sparsebridge.backends import QdrantBackend, QdrantTarget, Record
from sparsebridge.backends.elasticsearch import bodies as es
from sparsebridge.backends.lucene import bodies
from sparsebridge.backends.opensearch import bodies as os_
from sparsebridge.backends.qdrant.bodies import CLIENT, EDGE, hybrid_legs
from sparsebridge.errors import InputError
from sparsebridge.query import Fusion, FusionMethod, HybridQuery
from sparsebridge.types import Document, SparseVector

SPARSE = SparseVector.from_dict({7: 0.5, 3: 1.25})
QUERY = HybridQuery(sparse=SPARSE, dense=np.array([0.5, 0.25], dtype=np.float32), candidates=50)
NAMES = {"sparse_name": "splade", "dense_name": "dense"}
# what the rank_features adapter builds for the sparse leg (passed in as a clause)
SPARSE_CLAUSE = {
    "bool": {
        "should": [
            {"rank_feature": {"field": "splade.3", "linear": {}, "boost": 1.25}},
            {"rank_feature": {"field": "splade.7", "linear": {}, "boost": 0.5}},
        ]
    }
}


def dump(request: Any) -> dict[str, Any]:
    return dict(request.model_dump(exclude_none=True, mode="json"))


PREFETCH = [
    {"query": {"indices": [3, 7], "values": [1.25, 0.5]}, "using": "splade", "limit": 50},
    {"query": [0.5, 0.25], "using": "dense", "limit": 50},
]


def test_qdrant_fetches_each_leg_with_an_explicit_limit_and_has_no_bm25_leg() -> None:
    # hybrid queries are fused client-side (sparsebridge.query.fusion): one nearest request per leg
    legs = hybrid_legs(QUERY, **NAMES, text_field=None)
    requests = [CLIENT.nearest(v, using=using, limit=50, with_payload=True) for v, using in legs]
    assert [dump(r) for r in requests] == [{**p, "with_payload": True} for p in PREFETCH]
    with pytest.raises(ValueError, match="no BM25 leg"):
        hybrid_legs(HybridQuery(sparse=SPARSE, text="red planet"), **NAMES, text_field=None)
    with pytest.raises(ValueError, match="no BM25 leg"):
        CLIENT.nearest("red planet", using="text", limit=50, with_payload=True)


def test_qdrant_edge_bm25_leg_is_a_text_query_on_the_text_field() -> None:
    text = HybridQuery(sparse=SPARSE, text="red planet", candidates=50)
    legs = hybrid_legs(text, **NAMES, text_field="text")
    assert [(type(v).__name__, using) for v, using in legs] == [("SparseVector", "splade"), ("str", "text")]
    request = EDGE.nearest("red planet", using="text", limit=50, with_payload=True)
    assert (request.limit, request.query.field, request.query.query) == (50, "text", "red planet")


def test_opensearch_hybrid_and_pipelines() -> None:
    legs = [SPARSE_CLAUSE, os_.knn_clause([0.5, 0.25], k=50), bodies.match_clause("red planet")]
    assert os_.hybrid_body(legs, size=10) == {
        "size": 10,
        "query": {
            "hybrid": {
                "queries": [
                    SPARSE_CLAUSE,
                    {"knn": {"dense": {"vector": [0.5, 0.25], "k": 50}}},
                    {"match": {"text": {"query": "red planet"}}},
                ]
            }
        },
    }
    assert os_.search_pipeline_body(Fusion(FusionMethod.RRF, k=60), legs=3) == {
        "phase_results_processors": [
            {"score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": 60}}}
        ]
    }
    assert os_.search_pipeline_body(Fusion(FusionMethod.ZSCORE, weights=(3.0, 1.0)), legs=2) == {
        "phase_results_processors": [
            {
                "normalization-processor": {
                    "normalization": {"technique": "z_score"},
                    "combination": {"technique": "arithmetic_mean", "parameters": {"weights": [0.75, 0.25]}},
                }
            }
        ]
    }
    with pytest.raises(ValueError, match="no OpenSearch search pipeline"):
        os_.search_pipeline_body(Fusion(FusionMethod.DBSF), legs=2)
    assert bodies.msearch_body("docs", legs[:2], size=50) == [
        {"index": "docs"},
        {"size": 50, "query": SPARSE_CLAUSE},
        {"index": "docs"},
        {"size": 50, "query": {"knn": {"dense": {"vector": [0.5, 0.25], "k": 50}}}},
    ]


KNN = {"field": "dense", "query_vector": [0.5, 0.25], "k": 50, "num_candidates": 100}


def test_elasticsearch_retrievers_need_the_licensed_flag() -> None:
    legs = [SPARSE_CLAUSE, es.knn_section([0.5, 0.25], k=50)]
    with pytest.raises(ValueError, match="Enterprise license"):
        es.rrf_retriever_body(legs, Fusion(), size=10, window=50)
    assert es.rrf_retriever_body(legs, Fusion(k=60), size=10, window=50, licensed=True) == {
        "size": 10,
        "retriever": {
            "rrf": {
                "retrievers": [{"standard": {"query": SPARSE_CLAUSE}}, {"knn": KNN}],
                "rank_constant": 60,
                "rank_window_size": 50,
            }
        },
    }
    weighted = es.rrf_retriever_body(legs, Fusion(weights=(2.0, 1.0)), size=10, window=50, licensed=True)
    assert weighted["retriever"]["rrf"]["retrievers"][0] == {
        "retriever": {"standard": {"query": SPARSE_CLAUSE}},
        "weight": 2.0,
    }
    linear = es.linear_retriever_body(
        legs, Fusion(FusionMethod.MINMAX, weights=(3.0, 1.0)), size=10, window=50, licensed=True
    )
    assert linear == {
        "size": 10,
        "retriever": {
            "linear": {
                "retrievers": [
                    {
                        "retriever": {"standard": {"query": SPARSE_CLAUSE}},
                        "weight": 0.75,
                        "normalizer": "minmax",
                    },
                    {"retriever": {"knn": KNN}, "weight": 0.25, "normalizer": "minmax"},
                ],
                "rank_window_size": 50,
            }
        },
    }


def test_elasticsearch_free_weighted_bool_knn_and_msearch() -> None:
    body = es.weighted_bool_knn_body(
        size=10,
        sparse=SPARSE_CLAUSE,
        text=bodies.match_clause("red planet"),
        knn=es.knn_section([0.5, 0.25], k=50),
        weights=[1.0, 0.5, 2.0],
    )
    assert body == {
        "size": 10,
        "knn": {**KNN, "boost": 2.0},
        "query": {
            "bool": {
                "should": [
                    {"bool": {"must": [SPARSE_CLAUSE], "boost": 1.0}},
                    {"bool": {"must": [{"match": {"text": {"query": "red planet"}}}], "boost": 0.5}},
                ]
            }
        },
    }
    assert bodies.msearch_body("docs", [bodies.match_clause("red"), KNN], size=50) == [
        {"index": "docs"},
        {"size": 50, "query": {"match": {"text": {"query": "red"}}}},
        {"index": "docs"},
        {"size": 50, "knn": KNN},
    ]


def test_record_dense_is_validated_and_checked_before_any_network_call(tmp_path: Any) -> None:
    doc = Document("a", "text")
    assert Record(doc, SPARSE) == Record(doc, SPARSE, None)  # positional (document, vector) still works
    record = Record(doc, SPARSE, [1.0, 2.0])  # type: ignore[arg-type]
    assert record.dense is not None and record.dense.dtype == np.float32 and not record.dense.flags.writeable
    for bad, message in (([[1.0]], "1-D"), ([np.nan], "finite"), ([0.0, 0.0], "all zeros"), ([], "1-D")):
        with pytest.raises(ValueError, match=message):
            Record(doc, SPARSE, np.array(bad, dtype=np.float32))
    backend = QdrantBackend(QdrantTarget("docs", path=str(tmp_path)), dense_size=3)
    with pytest.raises(InputError, match="2-d dense vector; the collection's 'dense' vector is 3-d"):
        backend.write([record])
    plain = QdrantBackend(QdrantTarget("docs", path=str(tmp_path)))
    with pytest.raises(InputError, match="has a dense vector but the collection"):
        plain.write([record])
    assert backend._store.opened is None and plain._store.opened is None  # refused before a client existed
