"""The one sparse type, and the few value objects around it.

Everything downstream of the encoder (backends, CLI, evaluation) sees only
:class:`SparseVector`: sorted unique ``int32`` indices and strictly positive,
finite ``float32`` values. Zero and negative weights carry no information in a
SPLADE vector, so they are never representable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Document", "SearchHit", "SparseVector", "WriteStats", "check_dense"]

IntArray = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class SparseVector:
    """A sparse vector: ``indices`` (int32, strictly increasing, >= 0) and ``values`` (float32, > 0, finite).

    Example:
        >>> v = SparseVector.from_dict({7: 0.5, 3: 1.25})
        >>> v.indices.tolist(), v.values.tolist()
        ([3, 7], [1.25, 0.5])
        >>> v.dot(SparseVector.from_dict({7: 2.0}))
        1.0
    """

    indices: IntArray
    values: FloatArray

    def __post_init__(self) -> None:
        indices = np.ascontiguousarray(self.indices, dtype=np.int64)
        values = np.ascontiguousarray(self.values, dtype=np.float64)
        if indices.ndim != 1 or values.ndim != 1:
            raise ValueError("SparseVector indices and values must be one-dimensional")
        if indices.shape != values.shape:
            raise ValueError(
                f"SparseVector has {indices.size} indices but {values.size} values; they must match"
            )
        if indices.size:
            if indices[0] < 0 or indices[-1] > np.iinfo(np.int32).max:
                raise ValueError("SparseVector indices must be in [0, 2**31 - 1]")
            if indices.size > 1 and not bool(np.all(np.diff(indices) > 0)):
                raise ValueError("SparseVector indices must be strictly increasing (sorted, unique)")
            if not bool(np.all(np.isfinite(values))):
                raise ValueError("SparseVector values must be finite (no NaN or infinity)")
            if not bool(np.all(values > 0)):
                raise ValueError("SparseVector values must be > 0; drop zero and negative weights")
        checked_values = values.astype(np.float32)
        if checked_values.size and not bool(np.all(checked_values > 0)):
            raise ValueError("SparseVector values underflow float32 to zero; drop them")
        object.__setattr__(self, "indices", indices.astype(np.int32))
        object.__setattr__(self, "values", checked_values)
        self.indices.setflags(write=False)
        self.values.setflags(write=False)

    @classmethod
    def _trusted(cls, indices: IntArray, values: FloatArray) -> SparseVector:
        """Build without validation; only for arrays the encoder already made valid on the device."""
        vector = object.__new__(cls)
        indices.setflags(write=False)
        values.setflags(write=False)
        object.__setattr__(vector, "indices", indices)
        object.__setattr__(vector, "values", values)
        return vector

    @classmethod
    def from_dict(cls, weights: Mapping[int, float]) -> SparseVector:
        """Build from ``{index: weight}``; zero weights are dropped, negative ones are an error."""
        items = sorted((int(k), float(v)) for k, v in weights.items() if float(v) != 0.0)
        return cls(
            np.array([k for k, _ in items], dtype=np.int64),
            np.array([v for _, v in items], dtype=np.float64),
        )

    @classmethod
    def from_lists(cls, indices: Sequence[int], values: Sequence[float]) -> SparseVector:
        """Build from the public JSON shape ``{"indices": [...], "values": [...]}`` (validated)."""
        return cls(np.asarray(indices, dtype=np.int64), np.asarray(values, dtype=np.float64))

    def to_json_dict(self) -> dict[str, list[Any]]:
        """The public JSON shape: ``{"indices": [int, ...], "values": [float, ...]}``."""
        return {"indices": self.indices.tolist(), "values": self.values.tolist()}

    def as_dict(self) -> dict[int, float]:
        """``{index: weight}``."""
        return dict(zip(self.indices.tolist(), self.values.tolist(), strict=True))

    def __len__(self) -> int:
        return int(self.indices.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparseVector):
            return NotImplemented
        return bool(np.array_equal(self.indices, other.indices) and np.array_equal(self.values, other.values))

    def __hash__(self) -> int:
        return hash((self.indices.tobytes(), self.values.tobytes()))

    def __repr__(self) -> str:
        return f"SparseVector(nnz={len(self)})"

    def dot(self, other: SparseVector) -> float:
        """Exact dot product, accumulated in float64."""
        _, mine, theirs = np.intersect1d(self.indices, other.indices, assume_unique=True, return_indices=True)
        return float(np.dot(self.values[mine].astype(np.float64), other.values[theirs].astype(np.float64)))

    def prune(self, *, top_k: int | None = None, min_weight: float = 0.0) -> SparseVector:
        """Keep weights > ``min_weight``, then the ``top_k`` largest (ties broken by lower index)."""
        check_pruning(top_k, min_weight)
        keep = self.values > min_weight
        indices, values = self.indices[keep], self.values[keep]
        if top_k is not None and values.size > top_k:
            order = np.lexsort((indices, -values))[:top_k]
            order.sort()
            indices, values = indices[order], values[order]
        return SparseVector._trusted(indices.copy(), values.copy())


def check_pruning(top_k: int | None, min_weight: float) -> None:
    """Validate pruning options (shared by the encoder, the CLI and :meth:`SparseVector.prune`)."""
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if not isinstance(min_weight, (int, float)) or not math.isfinite(min_weight) or min_weight < 0:
        raise ValueError(f"min_weight must be a finite number >= 0, got {min_weight!r}")


@dataclass(frozen=True)
class Document:
    """One input document: a non-empty string id, non-blank text and JSON-serialisable metadata."""

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"document id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError(f"document {self.id!r} has empty text")
        try:
            json.dumps(self.metadata, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"document {self.id!r} has metadata that is not strict JSON: {e}") from e


@dataclass(frozen=True)
class SearchHit:
    """One search result: the user's document id, the backend's score and the stored payload."""

    id: str
    score: float
    payload: Mapping[str, Any] = field(default_factory=dict)


def check_dense(vector: object, *, what: str = "dense vector") -> npt.NDArray[np.float32]:
    """Return ``vector`` as a read-only 1-D finite float32 array with at least one non-zero value.

    Raises:
        ValueError: It is not 1-D, is empty, holds NaN/infinity, or is all zeros (no direction,
            so cosine similarity is undefined).
    """
    array = np.array(vector, dtype=np.float32)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D array, got shape {array.shape}")
    if not bool(np.all(np.isfinite(array))):
        raise ValueError(f"{what} must be finite (no NaN or infinity)")
    if not bool(np.any(array)):
        raise ValueError(f"{what} is all zeros (cosine similarity is undefined)")
    array.setflags(write=False)
    return array


@dataclass
class WriteStats:
    """What one ``write`` call did: items acknowledged, retried item-attempts, stale items.

    ``stale`` counts items the engine refused because it already holds a newer version (a replay
    of an older run under external versioning): not an error, nothing was overwritten.
    """

    written: int = 0
    retries: int = 0
    stale: int = 0

    def add(self, other: WriteStats) -> None:
        self.written += other.written
        self.retries += other.retries
        self.stale += other.stale
