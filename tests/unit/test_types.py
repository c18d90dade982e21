from __future__ import annotations

import numpy as np
import pytest

from sparsebridge.types import Document, SparseVector


def test_sparse_vector_normalises_dtypes_and_is_read_only() -> None:
    v = SparseVector(np.array([1, 5, 9]), np.array([0.5, 1.0, 2.0]))
    assert v.indices.dtype == np.int32 and v.values.dtype == np.float32
    with pytest.raises(ValueError):
        v.values[0] = 3.0


@pytest.mark.parametrize(
    ("indices", "values", "message"),
    [
        ([3, 1], [1.0, 1.0], "strictly increasing"),
        ([1, 1], [1.0, 1.0], "strictly increasing"),
        ([-1], [1.0], "indices must be in"),
        ([2**31], [1.0], "indices must be in"),
        ([1], [0.0], "must be > 0"),
        ([1], [-0.5], "must be > 0"),
        ([1], [float("nan")], "finite"),
        ([1], [float("inf")], "finite"),
        ([1], [1e-46], "underflow"),
        ([1, 2], [1.0], "must match"),
    ],
)
def test_sparse_vector_rejects_invalid(indices: list[int], values: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SparseVector.from_lists(indices, values)


def test_empty_vector_is_allowed_and_dots_to_zero() -> None:
    empty = SparseVector.from_lists([], [])
    assert len(empty) == 0
    assert empty.dot(SparseVector.from_dict({1: 2.0})) == 0.0


def test_from_dict_sorts_and_drops_zeros() -> None:
    v = SparseVector.from_dict({9: 1.5, 2: 0.0, 4: 0.25})
    assert v.indices.tolist() == [4, 9]
    assert v.values.tolist() == [0.25, 1.5]


def test_dot_is_exact_over_shared_indices() -> None:
    a = SparseVector.from_dict({1: 0.5, 3: 2.0, 8: 1.0})
    b = SparseVector.from_dict({3: 4.0, 8: 0.25, 10: 7.0})
    assert a.dot(b) == pytest.approx(2.0 * 4.0 + 1.0 * 0.25)
    assert a.dot(b) == b.dot(a)


def test_json_round_trip_and_equality() -> None:
    v = SparseVector.from_dict({7: 0.125, 2: 3.5})
    assert v.to_json_dict() == {"indices": [2, 7], "values": [3.5, 0.125]}
    assert SparseVector.from_lists(**v.to_json_dict()) == v
    assert v != SparseVector.from_dict({7: 0.125})


def test_prune_top_k_and_min_weight() -> None:
    v = SparseVector.from_dict({1: 0.1, 2: 0.9, 3: 0.5, 4: 0.9, 5: 0.3})
    assert v.prune(top_k=2).as_dict() == pytest.approx({2: 0.9, 4: 0.9})
    assert v.prune(min_weight=0.3).as_dict() == pytest.approx({2: 0.9, 3: 0.5, 4: 0.9})
    assert v.prune(top_k=1, min_weight=0.95).as_dict() == {}
    # ties at the boundary go to the lower index
    assert v.prune(top_k=1).indices.tolist() == [2]


@pytest.mark.parametrize(
    ("top_k", "min_weight"), [(0, 0.0), (-1, 0.0), (True, 0.0), (None, -0.1), (None, float("nan"))]
)
def test_prune_rejects_bad_options(top_k: int | None, min_weight: float) -> None:
    with pytest.raises(ValueError):
        SparseVector.from_dict({1: 1.0}).prune(top_k=top_k, min_weight=min_weight)


def test_document_validation() -> None:
    Document("a", "text", {"k": [1, 2]})
    with pytest.raises(ValueError, match="id"):
        Document("", "text")
    with pytest.raises(ValueError, match="empty text"):
        Document("a", "   ")
    with pytest.raises(ValueError, match="strict JSON"):
        Document("a", "text", {"x": float("nan")})
    with pytest.raises(ValueError, match="strict JSON"):
        Document("a", "text", {"x": object()})
