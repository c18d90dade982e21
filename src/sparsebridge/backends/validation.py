"""Checks every backend runs before any network call."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sparsebridge.backends.base import Record
from sparsebridge.errors import InputError
from sparsebridge.types import SparseVector, check_dense

__all__ = ["check_dense_queries", "check_dense_slots", "check_k", "check_query", "check_records"]


def check_records(records: Sequence[Record]) -> None:
    """Records must be :class:`Record` with unique document ids and non-empty vectors.

    An empty document vector would store a document that no sparse query can ever find, so it is
    refused rather than written silently.
    """
    seen: set[str] = set()
    for record in records:
        if not isinstance(record, Record) or not isinstance(record.vector, SparseVector):
            raise TypeError(f"expected Record(document, SparseVector), got {type(record).__name__}")
        document_id = record.document.id
        if document_id in seen:
            raise InputError(f"document id {document_id!r} appears twice in one write")
        seen.add(document_id)
        if len(record.vector) == 0:
            raise InputError(f"document {document_id!r} has an empty sparse vector (nothing to index)")


def check_query(query: SparseVector) -> None:
    if not isinstance(query, SparseVector):
        raise TypeError(f"query must be a SparseVector, got {type(query).__name__}")


def check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def check_dense_slots(records: Sequence[Record], *, size: int | None, slot: str) -> None:
    """Refuse, before any request, a dense vector the target has no slot for (never drop it).

    ``size`` is the target's dense dimension (None: no dense slot); ``slot`` names it in errors.
    """
    for record in records:
        if record.dense is None:
            continue
        if size is None:
            raise InputError(
                f"document {record.document.id!r} has a dense vector but {slot} does not exist: "
                "open the backend with dense_size=<dimension>"
            )
        if record.dense.shape[0] != size:
            raise InputError(
                f"document {record.document.id!r} has a {record.dense.shape[0]}-d dense vector; "
                f"{slot} is {size}-d"
            )


def check_dense_queries(
    queries: Sequence[object], *, size: int | None, slot: str
) -> list[npt.NDArray[np.float32]]:
    """Dense query vectors checked (:func:`~sparsebridge.types.check_dense`) against the target's slot.

    ``size`` is the target's dense dimension (None: no dense slot); ``slot`` names it in errors.

    Raises:
        ValueError: A vector is not a valid dense vector, the target has no dense slot, or the
            dimensions differ.
    """
    checked = [check_dense(q, what="dense query") for q in queries]
    if checked and size is None:
        raise ValueError(f"{slot} does not exist: open the backend with dense_size=<dimension>")
    for vector in checked:
        if vector.shape[0] != size:
            raise ValueError(f"dense query is {vector.shape[0]}-d; {slot} is {size}-d")
    return checked
