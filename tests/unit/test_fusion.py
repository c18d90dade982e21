"""Client-side fusion against hand-computed values (ties, empty legs, legs of different lengths)."""

from __future__ import annotations

import math

import pytest

from sparsebridge.query.fusion import Fusion, FusionMethod, dbsf, fuse, minmax, rrf, weighted_sum, zscore
from sparsebridge.types import SearchHit


def leg(*pairs: tuple[str, float]) -> list[SearchHit]:
    return [SearchHit(i, s) for i, s in pairs]


A = leg(("a", 9.0), ("b", 5.0), ("c", 1.0))
B = leg(("b", 0.8), ("d", 0.7))


def scores(hits: list[SearchHit]) -> list[tuple[str, float]]:
    return [(h.id, h.score) for h in hits]


def assert_fused(hits: list[SearchHit], expected: list[tuple[str, float]]) -> None:
    assert [h.id for h in hits] == [i for i, _ in expected]
    for hit, (_, score) in zip(hits, expected, strict=True):
        assert hit.score == pytest.approx(score, abs=1e-12)


def test_rrf_with_explicit_k_and_legs_of_different_lengths() -> None:
    assert_fused(
        rrf([A, B], k=60),
        [("b", 1 / 62 + 1 / 61), ("a", 1 / 61), ("d", 1 / 62), ("c", 1 / 63)],
    )
    assert_fused(rrf([A, B], k=0), [("b", 1 / 2 + 1), ("a", 1.0), ("d", 1 / 2), ("c", 1 / 3)])


def test_weighted_rrf_scales_each_contribution() -> None:
    assert_fused(
        rrf([A, B], k=60, weights=[2.0, 1.0]),
        [("b", 2 / 62 + 1 / 61), ("a", 2 / 61), ("c", 2 / 63), ("d", 1 / 62)],
    )


def test_ties_are_broken_by_document_id_whatever_the_input_order() -> None:
    for legs in ([leg(("y", 1.0)), leg(("x", 1.0))], [leg(("x", 1.0)), leg(("y", 1.0))]):
        assert_fused(rrf(legs, k=60), [("x", 1 / 61), ("y", 1 / 61)])
    assert [h.id for h in weighted_sum([leg(("b", 2.0), ("a", 2.0))])] == ["a", "b"]


def test_empty_legs_contribute_nothing() -> None:
    assert rrf([[], []], k=60) == []
    assert_fused(rrf([[], A], k=60), [("a", 1 / 61), ("b", 1 / 62), ("c", 1 / 63)])
    for method in FusionMethod:
        assert [h.id for h in fuse([[], A], Fusion(method))] == ["a", "b", "c"], method


def test_dbsf_is_qdrant_definition() -> None:
    std = math.sqrt(2.0)  # sample std of (3, 1): n - 1 in the denominator
    low, high = 2 - 3 * std, 2 + 3 * std
    hits = dbsf([leg(("a", 3.0), ("b", 1.0)), leg(("b", 10.0))])  # one-hit leg: 0.5
    assert_fused(hits, [("b", (1 - low) / (high - low) + 0.5), ("a", (3 - low) / (high - low))])
    assert_fused(dbsf([leg(("a", 2.0), ("b", 2.0))]), [("a", 0.5), ("b", 0.5)])  # zero variance


def test_minmax_convex_combination() -> None:
    legs = [leg(("a", 3.0), ("c", 2.0), ("b", 1.0)), B]
    # leg 1: a=1, c=0.5, b=0; leg 2: b=1, d=0; a missing document gets the leg's minimum (0)
    assert_fused(minmax(legs), [("a", 0.5), ("b", 0.5), ("c", 0.25), ("d", 0.0)])
    assert_fused(minmax(legs, weights=[3, 1]), [("a", 0.75), ("c", 0.375), ("b", 0.25), ("d", 0.0)])
    assert_fused(minmax([leg(("a", 4.0), ("b", 4.0))]), [("a", 1.0), ("b", 1.0)])


def test_zscore_convex_combination_missing_gets_the_leg_minimum() -> None:
    legs = [leg(("a", 3.0), ("c", 2.0), ("b", 1.0)), B]
    z = 1 / math.sqrt(2 / 3)  # population std of (3, 2, 1) is sqrt(2/3)
    assert_fused(
        zscore(legs),
        [("a", (z - 1) / 2), ("b", (-z + 1) / 2), ("c", (0 - 1) / 2), ("d", (-z - 1) / 2)],
    )


def test_weighted_sum_of_raw_scores() -> None:
    legs = [leg(("a", 3.0), ("c", 2.0), ("b", 1.0)), leg(("b", 0.5), ("d", 0.1))]
    assert_fused(weighted_sum(legs, weights=[1, 2]), [("a", 3.0), ("b", 2.0), ("c", 2.0), ("d", 0.2)])


def test_limit_and_payload_of_the_first_leg() -> None:
    first = [SearchHit("a", 1.0, {"text": "from leg 1"})]
    second = [SearchHit("a", 5.0, {"text": "from leg 2"}), SearchHit("b", 1.0)]
    hits = fuse([first, second], Fusion(FusionMethod.RRF, k=60), limit=1)
    assert len(hits) == 1 and hits[0].payload == {"text": "from leg 1"}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: fuse([leg(("a", 1.0), ("a", 0.5))], Fusion()), "twice"),
        (lambda: fuse([leg(("a", math.nan))], Fusion()), "non-finite"),
        (lambda: fuse([A, B], Fusion(weights=(1.0,))), "1 fusion weights for 2 legs"),
        (lambda: Fusion(weights=(0.0, 0.0)), "not all 0"),
        (lambda: Fusion(weights=(-1.0, 1.0)), ">= 0"),
        (lambda: Fusion(k=-1), "k must be"),
        (lambda: fuse([A], Fusion(), limit=0), "limit"),
    ],
)
def test_bad_input_is_refused(make, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        make()
