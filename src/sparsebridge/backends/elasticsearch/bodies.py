"""Elasticsearch's own request bodies: sparse queries, the dense field and leg, retrievers; pure, no I/O.

- Sparse: the exact queries of :class:`SparseQuery` (``sparse_vector`` with ``prune: false``,
  ``weighted_tokens``, linear ``rank_feature``) and the probe that asks a node which it parses.
- ``rrf`` / ``linear`` retrievers fuse server-side but need an Enterprise license: they are built
  only with ``licensed=True`` (off by default).
- Free clusters: :func:`weighted_bool_knn_body` (one request; the score is ``w_sparse * dot +
  w_bm25 * bm25 + w_dense * knn_score``, a weighted raw-score sum; note that Elasticsearch's knn
  score for cosine is ``(1 + cos) / 2``), or
  :func:`sparsebridge.backends.lucene.bodies.msearch_body` + client-side fusion
  (:mod:`sparsebridge.query.fusion`) for RRF, DBSF, min-max and z-score.

BM25 is a ``match`` on ``text``; dense is a top-level ``knn`` section on a ``dense_vector`` field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from sparsebridge.backends.lucene.bodies import (
    FieldType,
    is_knn_section,
    rank_features_search,
    search_body,
)
from sparsebridge.query.fusion import Fusion, FusionMethod

__all__ = [
    "PROBE_INDEX",
    "SparseQuery",
    "dense_vector_mapping",
    "knn_section",
    "linear_retriever_body",
    "probe_body",
    "rrf_retriever_body",
    "sparse_search",
    "sparse_vector_search",
    "weighted_bool_knn_body",
    "weighted_tokens_search",
]


def dense_vector_mapping(dimension: int) -> dict[str, Any]:
    """The ``dense_vector`` field: indexed (HNSW over float32 vectors), cosine similarity.

    ``index_options`` asks for ``hnsw`` explicitly: Elasticsearch 8.14+ otherwise quantizes the
    indexed vectors to int8 (``int8_hnsw``), which moves the scores away from the exact cosine.

    Elasticsearch's knn score for ``cosine`` is ``(1 + cos) / 2``; the adapter maps it back to the
    cosine, so the dense leg scores like Qdrant's and the exact reference's.

    Example:
        >>> dense_vector_mapping(384)["index_options"]
        {'type': 'hnsw'}
    """
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension <= 0:
        raise ValueError(f"dimension must be a positive integer, got {dimension!r}")
    return {
        "type": "dense_vector",
        "dims": dimension,
        "index": True,
        "similarity": "cosine",
        "index_options": {"type": "hnsw"},
    }


def knn_section(
    vector: Sequence[float], *, k: int, num_candidates: int | None = None, field: str = "dense"
) -> dict[str, Any]:
    """Dense leg: a ``knn`` search section (``num_candidates`` defaults to ``max(2k, 100)``)."""
    return {
        "field": field,
        "query_vector": [float(x) for x in vector],
        "k": k,
        "num_candidates": num_candidates or max(2 * k, 100),
    }


def _leg_retriever(leg: Mapping[str, Any]) -> dict[str, Any]:
    """A ``knn`` section becomes a ``knn`` retriever, any query clause a ``standard`` retriever."""
    if is_knn_section(leg):
        return {"knn": dict(leg)}
    return {"standard": {"query": dict(leg)}}


def _require_license(licensed: bool) -> None:
    if not licensed:
        raise ValueError(
            "rrf/linear retrievers need an Enterprise license: pass licensed=True, or use "
            "weighted_bool_knn_body / lucene.bodies.msearch_body with client-side fusion"
        )


def rrf_retriever_body(
    legs: Sequence[Mapping[str, Any]], fusion: Fusion, *, size: int, window: int, licensed: bool = False
) -> dict[str, Any]:
    """An ``rrf`` retriever over the legs; ``rank_constant`` = our ``k`` (both use 1-based ranks).

    Weighted RRF uses the per-retriever ``weight`` form (Elasticsearch >= 9.1).
    """
    _require_license(licensed)
    if fusion.method is not FusionMethod.RRF:
        raise ValueError(f"rrf_retriever_body needs an RRF fusion, got {fusion.method.value}")
    weights = fusion.leg_weights(len(legs))
    retrievers: list[dict[str, Any]] = [_leg_retriever(leg) for leg in legs]
    if fusion.weighted:
        retrievers = [{"retriever": r, "weight": w} for r, w in zip(retrievers, weights, strict=True)]
    rrf = {"retrievers": retrievers, "rank_constant": fusion.k, "rank_window_size": window}
    return {"size": size, "retriever": {"rrf": rrf}}


def linear_retriever_body(
    legs: Sequence[Mapping[str, Any]], fusion: Fusion, *, size: int, window: int, licensed: bool = False
) -> dict[str, Any]:
    """A ``linear`` retriever: ``minmax`` (normaliser ``minmax``) or ``sum`` (no normaliser)."""
    _require_license(licensed)
    if fusion.method not in (FusionMethod.MINMAX, FusionMethod.SUM):
        raise ValueError(f"the linear retriever does minmax or sum, not {fusion.method.value}")
    weights = fusion.leg_weights(len(legs))
    if fusion.method is FusionMethod.MINMAX:
        weights = tuple(w / sum(weights) for w in weights)
    retrievers = []
    for leg, weight in zip(legs, weights, strict=True):
        entry: dict[str, Any] = {"retriever": _leg_retriever(leg), "weight": weight}
        if fusion.method is FusionMethod.MINMAX:
            entry["normalizer"] = "minmax"
        retrievers.append(entry)
    return {"size": size, "retriever": {"linear": {"retrievers": retrievers, "rank_window_size": window}}}


def weighted_bool_knn_body(
    *,
    size: int,
    sparse: Mapping[str, Any] | None = None,
    text: Mapping[str, Any] | None = None,
    knn: Mapping[str, Any] | None = None,
    weights: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Free-license hybrid: ``bool.should`` of the boosted query legs plus a boosted ``knn`` section.

    ``weights`` are per present leg, in the order sparse, text (BM25), knn.
    """
    legs = [("sparse", sparse), ("text", text), ("knn", knn)]
    present = [(name, leg) for name, leg in legs if leg is not None]
    if len(present) < 2:
        raise ValueError("a hybrid body needs at least two legs")
    fusion = Fusion(FusionMethod.SUM, weights=None if weights is None else tuple(weights))
    boosts = fusion.leg_weights(len(present))
    should = []
    body: dict[str, Any] = {"size": size}
    for (name, leg), boost in zip(present, boosts, strict=True):
        assert leg is not None
        if name == "knn":
            body["knn"] = {**leg, "boost": boost}
        else:
            should.append({"bool": {"must": [dict(leg)], "boost": boost}})
    if should:
        body["query"] = {"bool": {"should": should}}
    return body


def sparse_vector_search(terms: Mapping[str, float], *, field: str, k: int) -> dict[str, Any]:
    """Exact dot product on an Elasticsearch ``sparse_vector`` field (8.15+), with pruning off.

    Indices created on ES 8.19/9.1+ prune query tokens by default; ``"prune": false`` keeps it exact.
    """
    return search_body({"sparse_vector": {"field": field, "query_vector": dict(terms), "prune": False}}, k)


def weighted_tokens_search(terms: Mapping[str, float], *, field: str, k: int) -> dict[str, Any]:
    """Exact dot product on a ``sparse_vector`` field with the ``weighted_tokens`` query (8.13+).

    Without a ``pruning_config`` it scores every query token (no pruning): exact.

    Example:
        >>> weighted_tokens_search({"1012": 0.5}, field="splade", k=3)["query"]
        {'weighted_tokens': {'splade': {'tokens': {'1012': 0.5}}}}
    """
    return search_body({"weighted_tokens": {field: {"tokens": dict(terms)}}}, k)


class SparseQuery(str, Enum):
    """The exact sparse queries Elasticsearch may offer, and the field type each one reads.

    ``SPARSE_VECTOR``: the ``sparse_vector`` query with ``"prune": false`` on a ``sparse_vector``
    field (8.15+; registered by the ML plugin, part of x-pack core in later 8.x releases).
    ``WEIGHTED_TOKENS``: the ``weighted_tokens`` query on a ``sparse_vector`` field (8.13+).
    ``RANK_FEATURE``: ``bool.should`` of linear ``rank_feature`` clauses on a ``rank_features``
    field (7.12+; the mapper-extras module).
    """

    SPARSE_VECTOR = "sparse_vector"
    WEIGHTED_TOKENS = "weighted_tokens"
    RANK_FEATURE = "rank_feature"

    @property
    def field_type(self) -> FieldType:
        return FieldType.RANK_FEATURES if self is SparseQuery.RANK_FEATURE else FieldType.SPARSE_VECTOR

    @property
    def since(self) -> tuple[int, int]:
        """The first Elasticsearch version with this query as an exact dot product."""
        return {"sparse_vector": (8, 15), "weighted_tokens": (8, 13), "rank_feature": (7, 12)}[self.value]

    @property
    def provider(self) -> str:
        """What registers it on a node."""
        return {
            "sparse_vector": "the ML plugin (x-pack core in later 8.x releases)",
            "weighted_tokens": "x-pack core",
            "rank_feature": "the mapper-extras module",
        }[self.value]


def sparse_search(query: SparseQuery, terms: Mapping[str, float], *, field: str, k: int) -> dict[str, Any]:
    """The search body of ``query`` over ``terms`` (feature name -> weight): an exact dot product."""
    if query is SparseQuery.SPARSE_VECTOR:
        return sparse_vector_search(terms, field=field, k=k)
    if query is SparseQuery.WEIGHTED_TOKENS:
        return weighted_tokens_search(terms, field=field, k=k)
    return rank_features_search(terms, field=field, k=k)


# A pattern no index matches: a probe search parses its query and searches nothing.
PROBE_INDEX = "sparsebridge-probe-no-such-index-*"


def probe_body(query: SparseQuery) -> dict[str, Any]:
    """A search with ``query`` that the node parses (400 if it does not know the query) and runs on nothing.

    Example:
        >>> probe_body(SparseQuery.WEIGHTED_TOKENS)["query"]
        {'weighted_tokens': {'probe': {'tokens': {'1': 1.0}}}}
    """
    if query is SparseQuery.RANK_FEATURE:  # one clause of what rank_features_search sends
        return {"size": 0, "query": {"rank_feature": {"field": "probe.1", "linear": {}}}}
    return {"size": 0, "query": sparse_search(query, {"1": 1.0}, field="probe", k=0)["query"]}
