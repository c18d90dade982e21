"""OpenSearch's own request bodies: the k-NN dense field and leg, native hybrid; pure, no I/O.

- Native: the neural-search plugin's ``hybrid`` query (one sub-query per leg) run through a search
  pipeline: ``normalization-processor`` (``min_max`` / ``z_score`` / ``l2`` normalisation, then an
  ``arithmetic_mean`` with per-leg weights) or ``score-ranker-processor`` (RRF, ``rank_constant``).
  Plugin, not core; the definitions are OpenSearch's own (for example ``min_max`` floors a
  normalised 0 at 0.001), so results are compared with client-side fusion only where they coincide.
- Without the plugin: :func:`sparsebridge.backends.lucene.bodies.msearch_body` sends every leg in
  one ``_msearch`` round trip and
  :mod:`sparsebridge.query.fusion` fuses them client-side.

Legs: sparse = a clause built by the ``rank_features`` adapter (``bool.should`` of linear
``rank_feature`` clauses), passed in as a dict; dense = :func:`knn_clause` (k-NN plugin
``knn_vector`` field, mapped by :func:`knn_vector_mapping`); BM25 = :func:`match_clause` on the
``text`` field (:func:`sparsebridge.backends.lucene.bodies.match_clause`).

The plugins are detected on the cluster (``GET _cat/plugins``): :data:`NEURAL_SEARCH_PLUGIN` for
the native ``hybrid`` path, :data:`KNN_PLUGIN` for any dense leg.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sparsebridge.backends.lucene.bodies import search_body
from sparsebridge.query.fusion import Fusion, FusionMethod

__all__ = [
    "KNN_PLUGIN",
    "KNN_SETTINGS",
    "NEURAL_SEARCH_PLUGIN",
    "NEURAL_SPARSE_MAX_WEIGHT",
    "has_search_pipeline",
    "hybrid_body",
    "knn_candidates",
    "knn_clause",
    "knn_field_problem",
    "knn_vector_mapping",
    "neural_sparse_search",
    "pipeline_name",
    "search_pipeline_body",
]

KNN_PLUGIN = "opensearch-knn"  # the ``component`` name in ``GET _cat/plugins``
NEURAL_SEARCH_PLUGIN = "opensearch-neural-search"
NEURAL_SPARSE_MAX_WEIGHT = 64.0  # neural_sparse query_tokens weights must be in (0, 64]
KNN_SETTINGS: dict[str, Any] = {"knn": True}  # index settings a knn_vector field needs
KNN_METHOD: dict[str, str] = {"name": "hnsw", "space_type": "cosinesimil", "engine": "lucene"}

_NORMALIZATION = {FusionMethod.MINMAX: "min_max", FusionMethod.ZSCORE: "z_score"}


def knn_candidates(k: int) -> int:
    """The ``k`` of the knn clause for ``k`` hits: ``max(2k, 100)`` (Elasticsearch's ``num_candidates``).

    On the Lucene engine the clause's ``k`` is the HNSW search's beam per segment; the request's
    ``size`` then keeps the best ``k`` hits. A beam of ``k`` alone misses true neighbours (k-NN
    2.19.1: recall@10 0.99 on a 140-document corpus with ``k=10``; 1.0 with this beam), and the
    clause's ``k`` works on every k-NN version (``method_parameters.ef_search`` needs k-NN 2.16+).

    Example:
        >>> knn_candidates(10), knn_candidates(100)
        (100, 200)
    """
    return max(2 * k, 100)


def knn_clause(vector: Sequence[float], *, k: int, field: str = "dense") -> dict[str, Any]:
    """Dense leg (k-NN plugin): ``{"knn": {field: {"vector": [...], "k": k}}}``.

    ``k`` is the number of candidates (see :func:`knn_candidates`); the request's ``size`` cuts them.
    """
    return {"knn": {field: {"vector": [float(x) for x in vector], "k": k}}}


def knn_vector_mapping(dimension: int) -> dict[str, Any]:
    """The ``knn_vector`` field (k-NN plugin): HNSW on the Lucene engine, cosine similarity.

    The Lucene engine's score for ``cosinesimil`` is ``(1 + cos) / 2``; the adapter maps it back to
    the cosine, so the dense leg scores like Qdrant's and the exact reference's.

    Example:
        >>> knn_vector_mapping(384)["method"]
        {'name': 'hnsw', 'space_type': 'cosinesimil', 'engine': 'lucene'}
    """
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension <= 0:
        raise ValueError(f"dimension must be a positive integer, got {dimension!r}")
    return {"type": "knn_vector", "dimension": dimension, "method": dict(KNN_METHOD)}


def knn_field_problem(have: Mapping[str, Any] | None, dimension: int) -> str | None:
    """Why an existing field's mapping ``have`` is not this backend's ``knn_vector``, or None.

    Type, dimension, engine and space type must match :func:`knn_vector_mapping` (the node adds
    ``parameters`` and may add more). A field mapped without a ``method`` uses the node's default
    engine, faiss (k-NN 2.19 and 3.x): without the k-NN native libraries the first refresh after a
    write to it kills the node (``UnsatisfiedLinkError`` in a write thread is fatal), so it is
    refused before any write.

    Example:
        >>> knn_field_problem({"type": "knn_vector", "dimension": 3}, 3)
        'engine (default) and space type (default), wanted lucene and cosinesimil'
    """
    if not isinstance(have, Mapping) or have.get("type") != "knn_vector":
        return f"type {have.get('type') if isinstance(have, Mapping) else None!r}, wanted 'knn_vector'"
    if have.get("dimension") != dimension:
        return f"dimension {have.get('dimension')!r}, wanted {dimension}"
    method = have.get("method")
    method = method if isinstance(method, Mapping) else {}
    engine, space = method.get("engine", "(default)"), method.get("space_type", "(default)")
    if (engine, space) != (KNN_METHOD["engine"], KNN_METHOD["space_type"]):
        return f"engine {engine} and space type {space}, wanted lucene and cosinesimil"
    return None


def hybrid_body(legs: Sequence[Mapping[str, Any]], *, size: int) -> dict[str, Any]:
    """A ``hybrid`` query over ``legs`` (at most 5 sub-queries in OpenSearch), top ``size`` hits."""
    if not 2 <= len(legs) <= 5:
        raise ValueError(f"an OpenSearch hybrid query takes 2 to 5 legs, got {len(legs)}")
    return {"size": size, "query": {"hybrid": {"queries": [dict(leg) for leg in legs]}}}


def has_search_pipeline(fusion: Fusion) -> bool:
    """Whether :func:`search_pipeline_body` can express ``fusion`` (unweighted RRF, min-max, z-score)."""
    if fusion.method is FusionMethod.RRF:
        return not fusion.weighted
    return fusion.method in _NORMALIZATION


def pipeline_name(body: Mapping[str, Any]) -> str:
    """A stable name for a search pipeline body: ``sparsebridge-`` + a digest of its JSON.

    The same fusion always maps to the same pipeline, so creating it again is a harmless overwrite.
    """
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return f"sparsebridge-{digest}"


def search_pipeline_body(fusion: Fusion, *, legs: int) -> dict[str, Any]:
    """The search pipeline that fuses a ``hybrid`` query's legs with ``fusion``.

    ``rrf`` -> ``score-ranker-processor`` (``rank_constant`` = our ``k``: both use 1-based ranks);
    ``minmax`` / ``zscore`` -> ``normalization-processor`` with ``arithmetic_mean`` and the weights.

    Raises:
        ValueError: ``dbsf`` and ``sum`` have no OpenSearch pipeline (fuse client-side), or weighted
            RRF (weights in the score ranker need OpenSearch >= 3.x; not emitted here).
    """
    weights = fusion.leg_weights(legs)
    if fusion.method is FusionMethod.RRF:
        if fusion.weighted:
            raise ValueError("weighted RRF is fused client-side on OpenSearch")
        combination = {"technique": "rrf", "rank_constant": fusion.k}
        return {"phase_results_processors": [{"score-ranker-processor": {"combination": combination}}]}
    if fusion.method in _NORMALIZATION:
        total = sum(weights)
        processor = {
            "normalization": {"technique": _NORMALIZATION[fusion.method]},
            "combination": {
                "technique": "arithmetic_mean",
                "parameters": {"weights": [w / total for w in weights]},
            },
        }
        return {"phase_results_processors": [{"normalization-processor": processor}]}
    raise ValueError(f"{fusion.method.value} has no OpenSearch search pipeline; fuse the legs client-side")


def neural_sparse_search(terms: Mapping[str, float], *, field: str, k: int) -> dict[str, Any]:
    """OpenSearch neural-search plugin ``neural_sparse`` with raw ``query_tokens`` (an exact dot product).

    Raises:
        ValueError: A weight is above 64, which the plugin refuses.
    """
    too_big = {name: w for name, w in terms.items() if not 0 < w <= NEURAL_SPARSE_MAX_WEIGHT}
    if too_big:
        raise ValueError(f"neural_sparse query weights must be in (0, 64]; got {too_big}")
    return search_body({"neural_sparse": {field: {"query_tokens": dict(terms)}}}, k)
