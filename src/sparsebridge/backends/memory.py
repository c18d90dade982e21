"""The exact in-memory reference backend: float64 dot products over every stored vector."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from sparsebridge.backends.base import Record, WriteStats, stored_payload
from sparsebridge.backends.targets import Target, parse_target
from sparsebridge.backends.validation import check_k, check_query, check_records
from sparsebridge.errors import BackendError
from sparsebridge.query.fusion import Fusion, fuse, ranked
from sparsebridge.query.hybrid import HybridQuery, LegKind
from sparsebridge.types import SearchHit, SparseVector, check_dense

__all__ = ["MemoryBackend"]


class MemoryBackend:
    """Exact reference: what every real backend's results are compared against.

    Sparse scores are float64 dot products; dense scores are float64 cosine similarities of the
    stored float32 embeddings; hybrid results are the client-side fusion
    (:mod:`sparsebridge.query.fusion`) of those exact legs. Every list is in the one order of
    :func:`sparsebridge.query.fusion.ranked` (score, then document id), so the order is fully
    deterministic. A sparse search returns only documents with a positive score. After
    :meth:`close` every call raises :class:`~sparsebridge.errors.BackendError`.
    """

    name = "memory"

    def __init__(self) -> None:
        self.location: Target = parse_target("memory://")
        self._rows: dict[str, tuple[SparseVector, dict[str, Any]]] = {}
        self._dense: dict[str, npt.NDArray[np.float64]] = {}
        self._versions: dict[str, int] = {}
        self._model: dict[str, Any] | None = None
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("this backend is closed; open a new one", backend=self.name)

    def ensure_schema(self) -> None:
        self._check_open()

    def stored_model(self) -> dict[str, Any] | None:
        """The model identity recorded by the first ingest (None: none yet)."""
        self._check_open()
        return None if self._model is None else dict(self._model)

    def store_model(self, identity: Mapping[str, Any]) -> None:
        """Record the model identity."""
        self._check_open()
        self._model = dict(identity)

    def write(self, records: Sequence[Record]) -> WriteStats:
        self._check_open()
        check_records(records)
        sizes = {r.dense.shape[0] for r in records if r.dense is not None}
        sizes |= {v.shape[0] for v in list(self._dense.values())[:1]}
        if len(sizes) > 1:
            raise ValueError(f"dense vectors of different dimensions in one backend: {sorted(sizes)}")
        stale = 0
        for record in records:
            stored = self._versions.get(record.document.id)
            if record.version is not None and stored is not None and stored >= record.version:
                stale += 1  # like external versioning: the same or a newer version is already here
                continue
            if record.version is not None:
                self._versions[record.document.id] = record.version
            self._rows[record.document.id] = (record.vector, stored_payload(record.document))
            if record.dense is not None:
                self._dense[record.document.id] = _unit(record.dense)
            else:
                self._dense.pop(record.document.id, None)
        return WriteStats(written=len(records) - stale, stale=stale)

    def delete(self, document_ids: Sequence[str]) -> None:
        self._check_open()
        for document_id in document_ids:
            self._rows.pop(document_id, None)
            self._dense.pop(document_id, None)
            self._versions.pop(document_id, None)

    def search(self, query: SparseVector, *, k: int = 10) -> list[SearchHit]:
        self._check_open()
        check_query(query)
        check_k(k)
        scored = (
            SearchHit(id=document_id, score=vector.dot(query), payload=payload)
            for document_id, (vector, payload) in self._rows.items()
        )
        return ranked(hit for hit in scored if hit.score > 0)[:k]

    def search_batch(self, queries: Sequence[SparseVector], *, k: int = 10) -> list[list[SearchHit]]:
        """:meth:`search` for each query."""
        return [self.search(q, k=k) for q in queries]

    def search_dense_batch(
        self, queries: Sequence[npt.NDArray[np.float32]], *, k: int = 10
    ) -> list[list[SearchHit]]:
        """Top-``k`` documents by exact cosine similarity for each dense query."""
        self._check_open()
        check_k(k)
        ids = list(self._dense)
        matrix = np.stack([self._dense[i] for i in ids]) if ids else np.zeros((0, 0))
        results = []
        for query in queries:
            unit = _unit(check_dense(query, what="dense query"))
            if ids and unit.shape[0] != matrix.shape[1]:
                raise ValueError(f"dense query is {unit.shape[0]}-d; stored vectors are {matrix.shape[1]}-d")
            scores = matrix @ unit if ids else np.zeros(0)
            hits = (
                SearchHit(id=i, score=float(s), payload=self._rows[i][1])
                for i, s in zip(ids, scores, strict=True)
            )
            results.append(ranked(hits)[:k])
        return results

    def search_hybrid_batch(
        self, queries: Sequence[HybridQuery], fusion: Fusion, *, k: int = 10
    ) -> list[list[SearchHit]]:
        """Client-side fusion of the exact legs (``candidates`` hits each) for each hybrid query.

        Raises:
            ValueError: A query has a BM25 leg (the reference has no full-text scoring).
        """
        self._check_open()
        check_k(k)
        return [fuse(self.exact_legs(query), fusion, limit=k) for query in queries]

    def exact_legs(
        self, query: HybridQuery, *, text_leg: list[SearchHit] | None = None
    ) -> list[list[SearchHit]]:
        """The exact sparse and dense legs of ``query`` (``candidates`` hits each), in leg order.

        A BM25 leg has no exact reference: it is taken from ``text_leg`` (e.g. a backend's own).

        Raises:
            ValueError: The query has a BM25 leg and no ``text_leg`` is given.
        """
        legs: list[list[SearchHit]] = []
        for kind in query.legs:
            if kind is LegKind.SPARSE:
                assert query.sparse is not None
                legs.append(self.search(query.sparse, k=query.candidates))
            elif kind is LegKind.DENSE:
                assert query.dense is not None
                legs.extend(self.search_dense_batch([query.dense], k=query.candidates))
            elif text_leg is None:
                raise ValueError("the memory reference has no BM25 leg")
            else:
                legs.append(text_leg[: query.candidates])
        return legs

    def count(self) -> int:
        self._check_open()
        return len(self._rows)

    def close(self) -> None:
        """Drop everything stored; later calls raise :class:`~sparsebridge.errors.BackendError`."""
        self._closed = True
        self._rows, self._dense, self._versions, self._model = {}, {}, {}, None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unit(vector: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    as64 = vector.astype(np.float64)
    return as64 / float(np.linalg.norm(as64))
