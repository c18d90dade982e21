"""Pure builders for Qdrant query requests (``qdrant_client.models``); no I/O.

Native hybrid (one request, fused by Qdrant) is used where Qdrant's definition equals ours
(:mod:`sparsebridge.query.fusion`):

- ``rrf`` without weights: ``prefetch`` per leg, then ``RrfQuery(Rrf(k=k + 1))``. Qdrant ranks from
  0 (``1 / (position + k_q)``), we rank from 1 (``1 / (rank + k)``), so ``k_q = k + 1`` gives the
  same scores. Qdrant's weighted RRF (``1 / (rank / w + k_q - 1)``) scales the rank, not the
  contribution, and is not our weighted RRF: weighted RRF runs client-side.
- ``dbsf`` without weights: ``FusionQuery(fusion=DBSF)`` (Qdrant has no DBSF weights).
- ``sum``: a formula query ``sum_i w_i * $score[i]``, with ``$score[i]`` defaulting to 0 for a
  point that leg ``i`` did not return. Qdrant stores the fused score as float32.

Everything else (``minmax``, ``zscore``, weighted ``rrf`` / ``dbsf``) fetches the legs with
:func:`leg_requests` in one ``query_batch_points`` round trip and fuses them client-side.
Every prefetch and leg sets its ``limit`` explicitly (Qdrant's default is 10).
"""

from __future__ import annotations

from typing import Any

from sparsebridge.errors import MissingExtraError
from sparsebridge.query.fusion import Fusion, FusionMethod
from sparsebridge.query.hybrid import HybridQuery, LegKind
from sparsebridge.types import SparseVector

__all__ = [
    "dense_request",
    "hybrid_request",
    "is_native",
    "leg_requests",
    "qdrant_client_module",
    "qdrant_rrf_k",
    "sparse_request",
]


def qdrant_client_module() -> Any:
    """The ``qdrant_client`` module, or an install hint when the ``qdrant`` extra is missing."""
    try:
        import qdrant_client
    except ImportError as e:
        raise MissingExtraError("qdrant-client", "qdrant") from e
    return qdrant_client


def _models() -> Any:
    return qdrant_client_module().models


def qdrant_rrf_k(k: int) -> int:
    """Qdrant's ``Rrf.k`` that gives our (1-based rank) RRF with constant ``k``."""
    return k + 1


def is_native(fusion: Fusion, legs: int = 2) -> bool:
    """True when Qdrant computes ``fusion`` itself exactly as :mod:`~sparsebridge.query.fusion` does."""
    if fusion.weights is not None:
        fusion.leg_weights(legs)
    if fusion.method is FusionMethod.SUM:
        return True
    return fusion.method in (FusionMethod.RRF, FusionMethod.DBSF) and not fusion.weighted


def sparse_request(
    vector: SparseVector, *, using: str, limit: int, with_payload: bool | list[str] = True
) -> Any:
    """A ``QueryRequest`` for the top ``limit`` points by sparse dot product."""
    models = _models()
    return models.QueryRequest(
        query=models.SparseVector(indices=vector.indices.tolist(), values=vector.values.tolist()),
        using=using,
        limit=limit,
        with_payload=with_payload,
    )


def dense_request(vector: Any, *, using: str, limit: int, with_payload: bool | list[str] = True) -> Any:
    """A ``QueryRequest`` for the top ``limit`` points by dense (cosine) similarity."""
    return _models().QueryRequest(
        query=[float(x) for x in vector], using=using, limit=limit, with_payload=with_payload
    )


def _legs(query: HybridQuery, *, sparse_name: str, dense_name: str) -> list[tuple[Any, str]]:
    models = _models()
    legs: list[tuple[Any, str]] = []
    for kind in query.legs:
        if kind is LegKind.SPARSE:
            assert query.sparse is not None
            vector = models.SparseVector(
                indices=query.sparse.indices.tolist(), values=query.sparse.values.tolist()
            )
            legs.append((vector, sparse_name))
        elif kind is LegKind.DENSE:
            assert query.dense is not None
            legs.append(([float(x) for x in query.dense], dense_name))
        else:
            raise ValueError("Qdrant has no BM25 leg: drop the query text, or use Elasticsearch/OpenSearch")
    return legs


def leg_requests(
    query: HybridQuery, *, sparse_name: str, dense_name: str, with_payload: bool | list[str] = True
) -> list[Any]:
    """One ``QueryRequest`` per leg (limit ``query.candidates``), for ``query_batch_points``.

    Raises:
        ValueError: The query has a BM25 leg (Qdrant has no full-text scoring of the ``text`` field).
    """
    models = _models()
    return [
        models.QueryRequest(query=q, using=using, limit=query.candidates, with_payload=with_payload)
        for q, using in _legs(query, sparse_name=sparse_name, dense_name=dense_name)
    ]


def hybrid_request(
    query: HybridQuery,
    fusion: Fusion,
    *,
    limit: int,
    sparse_name: str,
    dense_name: str,
    with_payload: bool | list[str] = True,
) -> Any:
    """One ``QueryRequest`` that Qdrant fuses itself: a prefetch per leg, then the fusion query.

    Raises:
        ValueError: ``fusion`` is not native on Qdrant (see :func:`is_native`), or the query has a
            BM25 leg.
    """
    models = _models()
    legs = _legs(query, sparse_name=sparse_name, dense_name=dense_name)
    if not is_native(fusion, len(legs)):
        raise ValueError(f"{fusion} is not computed natively by Qdrant; fuse the legs client-side")
    prefetch = [models.Prefetch(query=q, using=using, limit=query.candidates) for q, using in legs]
    if fusion.method is FusionMethod.RRF:
        fused: Any = models.RrfQuery(rrf=models.Rrf(k=qdrant_rrf_k(fusion.k)))
    elif fusion.method is FusionMethod.DBSF:
        fused = models.FusionQuery(fusion=models.Fusion.DBSF)
    else:
        weights = fusion.leg_weights(len(legs))
        fused = models.FormulaQuery(
            formula=models.SumExpression(
                sum=[models.MultExpression(mult=[w, f"$score[{i}]"]) for i, w in enumerate(weights)]
            ),
            defaults={f"$score[{i}]": 0.0 for i in range(len(legs))},
        )
    return models.QueryRequest(prefetch=prefetch, query=fused, limit=limit, with_payload=with_payload)
