"""Pure builders for Qdrant query requests; no I/O.

The decisions (which fusions Qdrant computes itself, with which parameters, how many candidates,
how the answers are finished) are made once here, for both Python APIs of Qdrant: qdrant-client's
models (:data:`CLIENT`, used by :mod:`.adapter`) and Qdrant Edge's classes (:mod:`.edge`). A
:class:`Dialect` only spells the planned requests in its API's types.

Native hybrid (one request, fused by Qdrant) is used where Qdrant's definition equals ours
(:mod:`sparsebridge.query.fusion`):

- ``rrf`` without weights: ``prefetch`` per leg, then RRF with ``k_q = k + 1``. Qdrant ranks from
  0 (``1 / (position + k_q)``), we rank from 1 (``1 / (rank + k)``), so ``k_q = k + 1`` gives the
  same scores. Qdrant's weighted RRF (``1 / (rank / w + k_q - 1)``) scales the rank, not the
  contribution, and is not our weighted RRF: weighted RRF runs client-side.
- ``dbsf`` without weights: Qdrant's DBSF (Qdrant has no DBSF weights).
- ``sum``: a formula query ``sum_i w_i * $score[i]``, with ``$score[i]`` defaulting to 0 for a
  point that leg ``i`` did not return. Qdrant stores the fused score as float32.

Everything else (``minmax``, ``zscore``, weighted ``rrf`` / ``dbsf``) fetches the legs in the same
single batch and fuses them client-side (:func:`plan_hybrid`). Every prefetch and leg sets its
``limit`` explicitly (Qdrant's default is 10).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from sparsebridge.errors import MissingExtraError
from sparsebridge.query.fusion import Fusion, FusionMethod, fuse
from sparsebridge.query.hybrid import HybridQuery, LegKind
from sparsebridge.types import SearchHit, SparseVector

__all__ = [
    "CLIENT",
    "Dialect",
    "HybridPlan",
    "Leg",
    "LegVector",
    "NativeFusion",
    "WithPayload",
    "check_vector_names",
    "dense_request",
    "hybrid_legs",
    "hybrid_request",
    "is_native",
    "leg_requests",
    "native_fusion",
    "plan_hybrid",
    "qdrant_client_module",
    "qdrant_rrf_k",
    "sparse_request",
]

LegVector = SparseVector | npt.NDArray[np.float32]
Leg = tuple[LegVector, str]  # a query vector and the name of the stored vector it searches
WithPayload = bool | list[str]


def check_vector_names(vector_name: str, dense_name: str, dense_size: int | None) -> None:
    """The collection's vector slots, as both Qdrant adapters take them (checked before any I/O).

    Raises:
        ValueError: The names are empty or equal, or ``dense_size`` is not a positive integer.
    """
    if not vector_name or not dense_name or vector_name == dense_name:
        raise ValueError("vector_name and dense_name must be distinct non-empty names")
    if dense_size is not None and (
        isinstance(dense_size, bool) or not isinstance(dense_size, int) or dense_size <= 0
    ):
        raise ValueError(f"dense_size must be a positive integer, got {dense_size!r}")


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


@dataclass(frozen=True)
class NativeFusion:
    """A fusion as Qdrant is asked to compute it: RRF with Qdrant's ``rrf_k``, DBSF, or a weighted sum.

    ``weights`` (``sum`` only) holds one weight per leg; a point missing from a leg scores 0 there.
    """

    method: FusionMethod
    rrf_k: int = 0
    weights: tuple[float, ...] = ()


def native_fusion(fusion: Fusion, legs: int) -> NativeFusion:
    """What Qdrant computes for ``fusion`` over ``legs`` legs.

    Raises:
        ValueError: ``fusion`` is not native on Qdrant (see :func:`is_native`).
    """
    if not is_native(fusion, legs):
        raise ValueError(f"{fusion} is not computed natively by Qdrant; fuse the legs client-side")
    if fusion.method is FusionMethod.RRF:
        return NativeFusion(FusionMethod.RRF, rrf_k=qdrant_rrf_k(fusion.k))
    if fusion.method is FusionMethod.DBSF:
        return NativeFusion(FusionMethod.DBSF)
    return NativeFusion(FusionMethod.SUM, weights=tuple(fusion.leg_weights(legs)))


class Dialect(Protocol):
    """How one Qdrant Python API spells the requests planned here."""

    def nearest(self, vector: LegVector, *, using: str, limit: int, with_payload: WithPayload) -> Any:
        """A request for the top ``limit`` points by similarity of the stored vector ``using``."""
        ...

    def fused(
        self,
        legs: Sequence[Leg],
        fusion: NativeFusion,
        *,
        candidates: int,
        limit: int,
        with_payload: WithPayload,
    ) -> Any:
        """A request that Qdrant fuses itself: one prefetch per leg (``candidates`` each), then ``fusion``."""
        ...


class _ClientDialect:
    """qdrant-client's ``models``."""

    def _vector(self, vector: LegVector) -> Any:
        if isinstance(vector, SparseVector):
            return _models().SparseVector(indices=vector.indices.tolist(), values=vector.values.tolist())
        return [float(x) for x in vector]

    def nearest(self, vector: LegVector, *, using: str, limit: int, with_payload: WithPayload) -> Any:
        return _models().QueryRequest(
            query=self._vector(vector), using=using, limit=limit, with_payload=with_payload
        )

    def fused(
        self,
        legs: Sequence[Leg],
        fusion: NativeFusion,
        *,
        candidates: int,
        limit: int,
        with_payload: WithPayload,
    ) -> Any:
        models = _models()
        prefetch = [
            models.Prefetch(query=self._vector(vector), using=using, limit=candidates)
            for vector, using in legs
        ]
        if fusion.method is FusionMethod.RRF:
            query: Any = models.RrfQuery(rrf=models.Rrf(k=fusion.rrf_k))
        elif fusion.method is FusionMethod.DBSF:
            query = models.FusionQuery(fusion=models.Fusion.DBSF)
        else:
            query = models.FormulaQuery(
                formula=models.SumExpression(
                    sum=[
                        models.MultExpression(mult=[w, f"$score[{i}]"]) for i, w in enumerate(fusion.weights)
                    ]
                ),
                defaults={f"$score[{i}]": 0.0 for i in range(len(legs))},
            )
        return models.QueryRequest(prefetch=prefetch, query=query, limit=limit, with_payload=with_payload)


CLIENT: Dialect = _ClientDialect()


def sparse_request(vector: SparseVector, *, using: str, limit: int, with_payload: WithPayload = True) -> Any:
    """A qdrant-client ``QueryRequest`` for the top ``limit`` points by sparse dot product."""
    return CLIENT.nearest(vector, using=using, limit=limit, with_payload=with_payload)


def dense_request(vector: Any, *, using: str, limit: int, with_payload: WithPayload = True) -> Any:
    """A qdrant-client ``QueryRequest`` for the top ``limit`` points by dense (cosine) similarity."""
    return CLIENT.nearest(np.asarray(vector), using=using, limit=limit, with_payload=with_payload)


def hybrid_legs(query: HybridQuery, *, sparse_name: str, dense_name: str) -> list[Leg]:
    """The legs of ``query``, each with the stored vector it searches.

    Raises:
        ValueError: The query has a BM25 leg (Qdrant has no full-text scoring of the ``text`` field).
    """
    legs: list[Leg] = []
    for kind in query.legs:
        if kind is LegKind.SPARSE:
            assert query.sparse is not None
            legs.append((query.sparse, sparse_name))
        elif kind is LegKind.DENSE:
            assert query.dense is not None
            legs.append((query.dense, dense_name))
        else:
            raise ValueError("Qdrant has no BM25 leg: drop the query text, or use Elasticsearch/OpenSearch")
    return legs


def leg_requests(
    query: HybridQuery,
    *,
    sparse_name: str,
    dense_name: str,
    with_payload: WithPayload = True,
    dialect: Dialect = CLIENT,
) -> list[Any]:
    """One request per leg (limit ``query.candidates``), to send in one batch.

    Raises:
        ValueError: The query has a BM25 leg (Qdrant has no full-text scoring of the ``text`` field).
    """
    return [
        dialect.nearest(v, using=using, limit=query.candidates, with_payload=with_payload)
        for v, using in hybrid_legs(query, sparse_name=sparse_name, dense_name=dense_name)
    ]


def hybrid_request(
    query: HybridQuery,
    fusion: Fusion,
    *,
    limit: int,
    sparse_name: str,
    dense_name: str,
    with_payload: WithPayload = True,
    dialect: Dialect = CLIENT,
) -> Any:
    """One request that Qdrant fuses itself: a prefetch per leg, then the fusion query.

    Raises:
        ValueError: ``fusion`` is not native on Qdrant (see :func:`is_native`), or the query has a
            BM25 leg.
    """
    legs = hybrid_legs(query, sparse_name=sparse_name, dense_name=dense_name)
    return dialect.fused(
        legs,
        native_fusion(fusion, len(legs)),
        candidates=query.candidates,
        limit=limit,
        with_payload=with_payload,
    )


@dataclass(frozen=True)
class HybridPlan:
    """The requests of a batch of hybrid queries (sent together), and how their answers become results."""

    requests: list[Any]
    finish: Callable[[list[list[SearchHit]]], list[list[SearchHit]]]


def plan_hybrid(
    queries: Sequence[HybridQuery],
    fusion: Fusion,
    *,
    k: int,
    sparse_name: str,
    dense_name: str,
    dialect: Dialect = CLIENT,
) -> HybridPlan:
    """Plan fused top-``k`` search for ``queries``: native where Qdrant computes ``fusion`` as we do.

    Native: one fused request per query asking for the whole fused list (at most ``candidates``
    per leg); ``finish`` re-sorts it with our tie-break (score, then document id) and cuts it to
    ``k``, so the result equals client-side fusion of the same legs. Otherwise one request per
    leg, and ``finish`` fuses each query's legs client-side.

    Raises:
        ValueError: A query has a BM25 leg, or the weights do not match the legs.
    """
    if all(is_native(fusion, len(q.legs)) for q in queries):
        requests = [
            hybrid_request(
                q,
                fusion,
                limit=q.candidates * len(q.legs),
                sparse_name=sparse_name,
                dense_name=dense_name,
                dialect=dialect,
            )
            for q in queries
        ]
        resort = Fusion(FusionMethod.SUM)  # one leg, weight 1: the same scores, our tie-break

        def finish_native(answers: list[list[SearchHit]]) -> list[list[SearchHit]]:
            return [fuse([hits], resort, limit=k) for hits in answers]

        return HybridPlan(requests, finish_native)
    requests, spans = [], []
    for query in queries:
        legs = leg_requests(query, sparse_name=sparse_name, dense_name=dense_name, dialect=dialect)
        spans.append((len(requests), len(legs)))
        requests.extend(legs)

    def finish_legs(answers: list[list[SearchHit]]) -> list[list[SearchHit]]:
        return [fuse(answers[start : start + n], fusion, limit=k) for start, n in spans]

    return HybridPlan(requests, finish_legs)
