"""Client-side fusion: one definition of each method, used for every backend.

A *leg* is one ranked result list (best first) from one retriever: sparse, dense or BM25. Fusion
merges legs into one list. The rank of a hit is its 1-based position in its leg; legs are never
re-sorted here, so a leg must come best first, ties in the one order below. A document id may
appear at most once per leg.

Methods (``w_i`` is the weight of leg ``i``, 1.0 when no weights are given):

- ``rrf``: ``score(d) = sum_i w_i / (k + rank_i(d))`` over the legs that contain ``d`` (the paper's
  Reciprocal Rank Fusion with 1-based ranks; with weights: weighted RRF). ``k`` is always explicit.
  (Qdrant's own RRF ranks from 0 with ``k_q = k + 1`` and, with weights, scales the rank instead
  of the contribution.)
- ``dbsf``: Distribution-Based Score Fusion, Qdrant's definition: each leg's scores are mapped
  with ``(s - (mean - 3 std)) / (6 std)`` (sample standard deviation, ``n - 1``; no clipping); a leg
  of one hit, or of equal scores, maps to 0.5; then ``sum_i w_i * norm_i(d)`` over the legs that
  contain ``d``.
- ``minmax``: convex combination of min-max normalised scores: ``norm = (s - min) / (max - min)``
  (1.0 for every hit of a leg whose scores are all equal), ``score(d) = sum_i (w_i / W) * norm_i(d)``
  with ``W = sum_i w_i``.
- ``zscore``: the same convex combination of z-scores ``(s - mean) / std`` (population standard
  deviation; 0.0 for a leg whose scores are all equal).
- ``sum``: weighted sum of the raw scores, ``sum_i w_i * s_i(d)`` (Qdrant formula queries,
  Elasticsearch/OpenSearch ``bool`` + ``knn`` boosts).

A document missing from a leg contributes nothing to ``rrf``, ``dbsf`` and ``sum`` (0), and the
leg's lowest normalised score to ``minmax`` (0.0) and ``zscore``: a document retrieved by one leg
only is never ranked above an otherwise identical one retrieved by both. Empty legs contribute
nothing.

Ties: one order for every ranked list sparsebridge returns (a fused list, and each leg too): score
descending, then document id (:attr:`SearchHit.id`, the user's id) ascending in string order
(:func:`order_key`, :func:`ranked`). Fused scores tie often (RRF gives two documents with mirrored
ranks the same score), and legs tie where documents have equal vectors; an engine orders such hits
in its own internal order. Every backend therefore puts its legs and its results in this order,
the exact in-memory reference included, so a backend's hybrid result equals the exact fusion of
the same legs exactly. At a cut-off, the order decides which of several tied hits is kept: an
engine asked for the top ``k`` may return any of them, so a backend asks for more than ``k`` and
keeps the first ``k`` of the ranked answer only when no tie can reach past what it got
(:func:`settled_top`). The payload of a fused hit is the one of the first leg that contains it.

Example:
    >>> from sparsebridge.types import SearchHit
    >>> sparse = [SearchHit("a", 9.0), SearchHit("b", 5.0)]
    >>> dense = [SearchHit("b", 0.8), SearchHit("c", 0.7)]
    >>> [(h.id, round(h.score, 4)) for h in rrf([sparse, dense], k=60)]
    [('b', 0.0325), ('a', 0.0164), ('c', 0.0161)]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sparsebridge.types import SearchHit

__all__ = [
    "Fusion",
    "FusionMethod",
    "dbsf",
    "fuse",
    "minmax",
    "order_key",
    "ranked",
    "rrf",
    "settled_top",
    "weighted_sum",
    "zscore",
]

Leg = Sequence[SearchHit]


class FusionMethod(str, Enum):
    """How legs are fused (see the module docstring for the exact definitions)."""

    RRF = "rrf"
    DBSF = "dbsf"
    MINMAX = "minmax"
    ZSCORE = "zscore"
    SUM = "sum"


@dataclass(frozen=True)
class Fusion:
    """A fusion method with its parameters.

    Args:
        method: The method.
        k: RRF's rank constant (1-based ranks, the paper's definition); only used by RRF. Default
            60, the paper's value (Qdrant's own default is 2 in its 0-based convention: always
            sent explicitly).
        weights: One weight per leg, in leg order; ``None`` for equal weights (1.0 each). Weights
            must be finite and >= 0, and not all 0.

    Example:
        >>> Fusion(FusionMethod.RRF, k=60, weights=(1.0, 0.5)).weighted
        True
    """

    method: FusionMethod = FusionMethod.RRF
    k: int = 60
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", FusionMethod(self.method))
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 0:
            raise ValueError(f"RRF k must be an integer >= 0, got {self.k!r}")
        if self.weights is not None:
            weights = tuple(float(w) for w in self.weights)
            if not weights or any(not math.isfinite(w) or w < 0 for w in weights) or not any(weights):
                raise ValueError(f"fusion weights must be finite, >= 0 and not all 0, got {self.weights!r}")
            object.__setattr__(self, "weights", weights)

    @property
    def weighted(self) -> bool:
        """True when the weights are not all equal to 1.0."""
        return self.weights is not None and any(w != 1.0 for w in self.weights)

    def leg_weights(self, legs: int) -> tuple[float, ...]:
        """The weights for ``legs`` legs (1.0 each when none were given).

        Raises:
            ValueError: The number of weights differs from the number of legs.
        """
        if self.weights is None:
            return (1.0,) * legs
        if len(self.weights) != legs:
            raise ValueError(f"{len(self.weights)} fusion weights for {legs} legs; give one per leg")
        return self.weights


def order_key(hit: SearchHit) -> tuple[float, str]:
    """The sort key of the one order of ranked hits: score descending, then document id ascending."""
    return (-hit.score, hit.id)


def ranked(hits: Iterable[SearchHit]) -> list[SearchHit]:
    """``hits`` in the one order (score descending, then document id ascending).

    Example:
        >>> [h.id for h in ranked([SearchHit("b", 1.0), SearchHit("c", 2.0), SearchHit("a", 1.0)])]
        ['c', 'a', 'b']
    """
    return sorted(hits, key=order_key)


def settled_top(page: Sequence[SearchHit], k: int, *, asked: int) -> list[SearchHit] | None:
    """The top ``k`` in the one order, from an engine's top-``asked`` ``page``; None if not known yet.

    ``page`` holds the engine's best ``asked`` hits by score, ties in any order. Its first ``k``
    in the one order are the true top ``k`` when the page holds everything there is (fewer than
    ``asked`` hits), or when its lowest score is below the ``k``-th: no hit left out can tie
    the ``k``-th. Otherwise a hit left out may tie it and come first by id: ask again for more.

    Example:
        >>> page = [SearchHit("b", 2.0), SearchHit("c", 1.0), SearchHit("a", 1.0)]
        >>> settled_top(page, 2, asked=3) is None  # "c" and "a" tie at the cut: is there a third?
        True
        >>> [h.id for h in settled_top(page, 1, asked=3)]
        ['b']
        >>> [h.id for h in settled_top(page, 2, asked=4)]
        ['b', 'a']
    """
    if k <= 0 or asked < k:
        raise ValueError(f"need 0 < k <= asked, got k={k!r}, asked={asked!r}")
    top = ranked(page)
    if len(top) < asked or (len(top) > k and top[-1].score < top[k - 1].score):
        return top[:k]
    return None


def rrf(legs: Sequence[Leg], *, k: int, weights: Sequence[float] | None = None) -> list[SearchHit]:
    """Reciprocal Rank Fusion: ``sum_i w_i / (k + rank_i)`` with 1-based ranks."""
    fusion = Fusion(FusionMethod.RRF, k=k, weights=None if weights is None else tuple(weights))
    return fuse(legs, fusion)


def dbsf(legs: Sequence[Leg], *, weights: Sequence[float] | None = None) -> list[SearchHit]:
    """Distribution-Based Score Fusion (Qdrant's definition, optionally weighted)."""
    return fuse(legs, Fusion(FusionMethod.DBSF, weights=None if weights is None else tuple(weights)))


def minmax(legs: Sequence[Leg], *, weights: Sequence[float] | None = None) -> list[SearchHit]:
    """Convex combination of min-max normalised scores."""
    return fuse(legs, Fusion(FusionMethod.MINMAX, weights=None if weights is None else tuple(weights)))


def zscore(legs: Sequence[Leg], *, weights: Sequence[float] | None = None) -> list[SearchHit]:
    """Convex combination of z-score normalised scores."""
    return fuse(legs, Fusion(FusionMethod.ZSCORE, weights=None if weights is None else tuple(weights)))


def weighted_sum(legs: Sequence[Leg], *, weights: Sequence[float] | None = None) -> list[SearchHit]:
    """Weighted sum of raw scores."""
    return fuse(legs, Fusion(FusionMethod.SUM, weights=None if weights is None else tuple(weights)))


def fuse(legs: Sequence[Leg], fusion: Fusion, *, limit: int | None = None) -> list[SearchHit]:
    """Fuse ranked legs with ``fusion``; returns the fused hits, best first, at most ``limit``.

    Raises:
        ValueError: A leg repeats a document id or has a non-finite score, or the number of
            weights differs from the number of legs.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    weights = fusion.leg_weights(len(legs))
    for number, leg in enumerate(legs):
        _check_leg(leg, number)
    normalise, missing = _NORMALISERS[fusion.method]
    scores: dict[str, float] = {}
    payloads: dict[str, Mapping[str, Any]] = {}
    for leg in legs:
        for hit in leg:
            scores.setdefault(hit.id, 0.0)
            payloads.setdefault(hit.id, hit.payload)
    total = sum(weights)
    for leg, weight in zip(legs, weights, strict=True):
        if not leg:
            continue
        if fusion.method is FusionMethod.RRF:
            values = [1.0 / (fusion.k + rank) for rank in range(1, len(leg) + 1)]
        else:
            values = normalise([hit.score for hit in leg])
        scale = weight / total if fusion.method in (FusionMethod.MINMAX, FusionMethod.ZSCORE) else weight
        present = {hit.id for hit in leg}
        for hit, value in zip(leg, values, strict=True):
            scores[hit.id] += weight * value if fusion.method is FusionMethod.RRF else scale * value
        if missing is not None:
            floor = missing(values)
            for document_id in scores:
                if document_id not in present:
                    scores[document_id] += scale * floor
    fused = ranked(SearchHit(id=i, score=s, payload=payloads[i]) for i, s in scores.items())
    return fused if limit is None else fused[:limit]


def _check_leg(leg: Leg, number: int) -> None:
    seen: set[str] = set()
    for hit in leg:
        if not isinstance(hit, SearchHit):
            raise TypeError(f"leg {number} holds {type(hit).__name__}, expected SearchHit")
        if hit.id in seen:
            raise ValueError(f"leg {number} lists document {hit.id!r} twice")
        if not math.isfinite(hit.score):
            raise ValueError(f"leg {number} has a non-finite score for {hit.id!r}")
        seen.add(hit.id)


def _identity(scores: list[float]) -> list[float]:
    return list(scores)


def _dbsf_norm(scores: list[float]) -> list[float]:
    # Written as Qdrant writes it (qdrant_client.hybrid.fusion, segment score_fusion.rs), in the
    # same operation order, so fused scores match Qdrant local mode bit for bit.
    if len(scores) == 1:
        return [0.5]
    mean = sum(scores) / len(scores)
    variance = sum((s - mean) ** 2 for s in scores) / (len(scores) - 1)
    if variance == 0:
        return [0.5] * len(scores)
    std = variance**0.5
    low, high = mean - 3 * std, mean + 3 * std
    return [(s - low) / (high - low) for s in scores]


def _minmax_norm(scores: list[float]) -> list[float]:
    low, high = min(scores), max(scores)
    if high == low:
        return [1.0] * len(scores)
    return [(s - low) / (high - low) for s in scores]


def _zscore_norm(scores: list[float]) -> list[float]:
    mean = sum(scores) / len(scores)
    std = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5
    if std == 0:
        return [0.0] * len(scores)
    return [(s - mean) / std for s in scores]


_Normaliser = Callable[[list[float]], list[float]]
# method -> (normalisation of one leg's scores, the value a document missing from the leg gets;
# None: nothing)
_NORMALISERS: dict[FusionMethod, tuple[_Normaliser, Callable[[list[float]], float] | None]] = {
    FusionMethod.RRF: (_identity, None),
    FusionMethod.DBSF: (_dbsf_norm, None),
    FusionMethod.SUM: (_identity, None),
    FusionMethod.MINMAX: (_minmax_norm, min),
    FusionMethod.ZSCORE: (_zscore_norm, min),
}
