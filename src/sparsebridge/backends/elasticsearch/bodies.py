"""Elasticsearch's own request bodies: the ``dense_vector`` field and ``knn`` leg, retrievers; pure, no I/O.

- ``rrf`` / ``linear`` retrievers fuse server-side but need an Enterprise license: they are built
  only with ``licensed=True`` (off by default).
- Free clusters: :func:`weighted_bool_knn_body` (one request; the score is ``w_sparse * dot +
  w_bm25 * bm25 + w_dense * knn_score``, a weighted raw-score sum; note that Elasticsearch's knn
  score for cosine is ``(1 + cos) / 2``), or :func:`msearch_body` + client-side fusion
  (:mod:`sparsebridge.query.fusion`) for RRF, DBSF, min-max and z-score.

The sparse leg's clause comes from the adapter (``rank_features`` / ``sparse_vector``) as a dict;
BM25 is a ``match`` on ``text``; dense is a top-level ``knn`` section on a ``dense_vector`` field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sparsebridge.backends.lucene.bodies import msearch_lines, search_body
from sparsebridge.query.fusion import Fusion, FusionMethod

__all__ = [
    "dense_vector_mapping",
    "knn_section",
    "linear_retriever_body",
    "msearch_body",
    "rrf_retriever_body",
    "sparse_vector_search",
    "weighted_bool_knn_body",
]


def dense_vector_mapping(dimension: int) -> dict[str, Any]:
    """The ``dense_vector`` field: indexed (HNSW), cosine similarity.

    Elasticsearch's knn score for ``cosine`` is ``(1 + cos) / 2``; the adapter maps it back to the
    cosine, so the dense leg scores like Qdrant's and the exact reference's.

    Example:
        >>> dense_vector_mapping(384)
        {'type': 'dense_vector', 'dims': 384, 'index': True, 'similarity': 'cosine'}
    """
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension <= 0:
        raise ValueError(f"dimension must be a positive integer, got {dimension!r}")
    return {"type": "dense_vector", "dims": dimension, "index": True, "similarity": "cosine"}


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
    if "query_vector" in leg:
        return {"knn": dict(leg)}
    return {"standard": {"query": dict(leg)}}


def _require_license(licensed: bool) -> None:
    if not licensed:
        raise ValueError(
            "rrf/linear retrievers need an Enterprise license: pass licensed=True, or use "
            "weighted_bool_knn_body / msearch_body with client-side fusion"
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


def msearch_body(
    index: str,
    legs: Sequence[Mapping[str, Any]],
    *,
    size: int,
    source: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """``_msearch`` lines: a header and a body per leg (a ``knn`` section or a query clause).

    With ``source``, each body asks only for those ``_source`` fields and no total hit count.
    """
    bodies = [
        {"size": size, "knn": dict(leg)} if "query_vector" in leg else {"size": size, "query": dict(leg)}
        for leg in legs
    ]
    return msearch_lines(index, bodies, source=source)


def sparse_vector_search(terms: Mapping[str, float], *, field: str, k: int) -> dict[str, Any]:
    """Exact dot product on an Elasticsearch ``sparse_vector`` field (8.15+), with pruning off.

    Indices created on ES 8.19/9.1+ prune query tokens by default; ``"prune": false`` keeps it exact.
    """
    return search_body({"sparse_vector": {"field": field, "query_vector": dict(terms), "prune": False}}, k)
