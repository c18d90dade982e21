"""Snapshots of every request body the OpenSearch and Elasticsearch adapters send (no engine)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparsebridge.backends import (
    ClusterTarget,
    ElasticsearchBackend,
    FieldType,
    OpenSearchBackend,
    OpenSearchQuery,
)
from sparsebridge.backends.elasticsearch import SparseQuery
from sparsebridge.backends.lucene import bodies
from sparsebridge.errors import InputError
from sparsebridge.types import Document, SparseVector

URL = "http://localhost:9200"
QUERY = SparseVector.from_dict({1012: 0.5, 2133: 1.25, 29625: 0.3})  # the BERT tokens ".", "...", "##."
PAYLOAD = ["doc_id", "text", "metadata"]


def test_index_bodies() -> None:
    properties = {
        "doc_id": {"type": "keyword"},
        "text": {"type": "text"},
        "metadata": {"type": "object", "enabled": False},
        "splade": {"type": "rank_features"},
    }
    assert bodies.index_body(field="splade") == {"mappings": {"dynamic": "strict", "properties": properties}}
    assert bodies.index_body(field="splade", field_type=FieldType.SPARSE_VECTOR, shards=2, replicas=0) == {
        "settings": {"index": {"number_of_shards": 2, "number_of_replicas": 0}},
        "mappings": {"dynamic": "strict", "properties": {**properties, "splade": {"type": "sparse_vector"}}},
    }


def test_rank_features_query_is_linear_with_boost() -> None:
    body = OpenSearchBackend(ClusterTarget("docs", url=URL)).search_body(QUERY, k=5)
    assert body == {
        "size": 5,
        "track_total_hits": False,
        "_source": PAYLOAD,
        "query": {
            "bool": {
                "should": [
                    {"rank_feature": {"field": "splade.1012", "linear": {}, "boost": 0.5}},
                    {"rank_feature": {"field": "splade.2133", "linear": {}, "boost": 1.25}},
                    {"rank_feature": {"field": "splade.29625", "linear": {}, "boost": 0.3}},
                ]
            }
        },
    }
    es = ElasticsearchBackend(ClusterTarget("docs", url=URL), field_type=FieldType.RANK_FEATURES)
    assert es.search_body(QUERY, k=5) == body  # the same DSL on both engines
    assert es.index_body() == OpenSearchBackend(ClusterTarget("docs", url=URL)).index_body()


def test_es_sparse_vector_query_has_prune_false() -> None:
    es = ElasticsearchBackend(ClusterTarget("docs", url=URL), field_type=FieldType.SPARSE_VECTOR)
    assert es.index_body()["mappings"]["properties"]["splade"] == {"type": "sparse_vector"}
    assert es.search_body(QUERY, k=3) == {
        "size": 3,
        "track_total_hits": False,
        "_source": PAYLOAD,
        "query": {
            "sparse_vector": {
                "field": "splade",
                "query_vector": {"1012": 0.5, "2133": 1.25, "29625": 0.3},
                "prune": False,
            }
        },
    }


def test_es_bodies_need_a_field_type_or_the_node() -> None:
    with pytest.raises(ValueError, match="chosen from what the node offers"):
        ElasticsearchBackend(ClusterTarget("docs", url=URL)).index_body()


def test_es_weighted_tokens_query_has_no_pruning_config() -> None:
    es = ElasticsearchBackend(ClusterTarget("docs", url=URL), sparse_query=SparseQuery.WEIGHTED_TOKENS)
    assert es.index_body()["mappings"]["properties"]["splade"] == {"type": "sparse_vector"}
    assert es.search_body(QUERY, k=3) == {
        "size": 3,
        "track_total_hits": False,
        "_source": PAYLOAD,
        "query": {"weighted_tokens": {"splade": {"tokens": {"1012": 0.5, "2133": 1.25, "29625": 0.3}}}},
    }
    with pytest.raises(ValueError, match="reads a sparse_vector field, not rank_features"):
        ElasticsearchBackend(
            ClusterTarget("docs", url=URL),
            field_type=FieldType.RANK_FEATURES,
            sparse_query=SparseQuery.WEIGHTED_TOKENS,
        )


def test_neural_sparse_query_sends_raw_tokens() -> None:
    backend = OpenSearchBackend(ClusterTarget("docs", url=URL), query=OpenSearchQuery.NEURAL_SPARSE)
    assert backend.search_body(QUERY, k=4)["query"] == {
        "neural_sparse": {"splade": {"query_tokens": {"1012": 0.5, "2133": 1.25, "29625": 0.3}}}
    }
    with pytest.raises(ValueError, match=r"\(0, 64\]"):
        backend.search_body(SparseVector.from_dict({1: 65.0}), k=4)


def test_queries_are_pruned_to_the_clause_budget() -> None:
    query = SparseVector.from_dict({i: float(i) for i in range(1, 2001)})
    body = OpenSearchBackend(ClusterTarget("docs", url=URL), max_query_terms=3).search_body(query, k=1)
    assert [c["rank_feature"]["field"] for c in body["query"]["bool"]["should"]] == [
        "splade.1998",
        "splade.1999",
        "splade.2000",
    ]
    default = OpenSearchBackend(ClusterTarget("docs", url=URL)).search_body(query, k=1)
    assert len(default["query"]["bool"]["should"]) == 1024


def test_feature_names_are_token_ids_without_dots() -> None:
    assert [bodies.feature_name(i) for i in (0, 1012, 2133, 29625)] == ["0", "1012", "2133", "29625"]
    names = {bodies.feature_name(i) for i in range(30522)}
    assert len(names) == 30522 and not any("." in n for n in names)
    for bad in (-1, True, 1.5, "7"):
        with pytest.raises(ValueError):
            bodies.feature_name(bad)  # type: ignore[arg-type]


def test_weights_the_engines_refuse_are_dropped() -> None:
    tiny = float(np.finfo(np.float32).tiny)
    vector = SparseVector.from_dict({1: tiny, 2: tiny / 2, 3: 1e-45, 4: 0.3})
    assert bodies.features(vector) == {"1": 1.1754944e-38, "4": 0.3}  # shortest float32 text
    assert json.dumps(bodies.features(SparseVector.from_dict({5: 0.1}))) == '{"5": 0.1}'  # float32, short
    only_subnormal = SparseVector.from_dict({1: 1e-40})
    with pytest.raises(InputError, match="no weight"):
        bodies.bulk_index_lines(Document("a", "t"), only_subnormal, doc_key="k", field="splade")


def test_bulk_lines() -> None:
    lines = bodies.bulk_index_lines(
        Document("a", "t", {"x": 1}), SparseVector.from_dict({1012: 0.5}), doc_key="k1", field="splade"
    )
    assert lines == (
        '{"index":{"_id":"k1"}}\n{"doc_id":"a","text":"t","metadata":{"x":1},"splade":{"1012":0.5}}\n'
    )
    assert bodies.bulk_delete_line("k1") == '{"delete":{"_id":"k1"}}\n'


def test_mapping_problems() -> None:
    good = bodies.index_body(field="splade")["mappings"]
    assert bodies.mapping_problems(good, field="splade", field_type=FieldType.RANK_FEATURES) == []
    assert bodies.mapping_problems(good, field="splade", field_type=FieldType.SPARSE_VECTOR) == [
        "field 'splade' is 'rank_features', wanted 'sparse_vector'"
    ]
    assert bodies.mapping_problems(good, field="sv", field_type=FieldType.RANK_FEATURES) == ["no field 'sv'"]
    assert (
        bodies.mapping_problems({}, field="splade", field_type=FieldType.RANK_FEATURES)[0]
        == "no field 'doc_id'"
    )


@pytest.mark.parametrize("field", ["", "a.b", "doc_id", "text", "metadata"])
def test_bad_field_names(field: str) -> None:
    with pytest.raises(ValueError):
        OpenSearchBackend(ClusterTarget("docs", url=URL), field=field)
