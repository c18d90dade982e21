"""One Qdrant backend over a store: the searches, hybrid fusion, the write plan and hit parsing.

What Qdrant does is the same whether the points live behind qdrant-client (a server, or its local
mode: :mod:`.adapter`) or in a Qdrant Edge shard in this process (:mod:`.edge`). :class:`Qdrant`
holds that once and does its I/O through a :class:`QdrantStore`, the small interface both stores
implement: open, upsert, delete, query, count, the model record, close. What is sent is built in
:mod:`.bodies`, spelled by the store's :class:`~.bodies.Dialect`.

Every ranked list comes back in the one order of :mod:`sparsebridge.query.fusion` (score, then
document id): an engine returns tied points in its own internal order, and a tie at the cut-off
``k`` may cross what it returned. Each list is therefore asked for with one more than ``k`` and
asked again, twice as long, where a tie reaches the end of the answer
(:func:`~sparsebridge.query.fusion.settled_top`). Hybrid queries fetch their legs that way in one
batch and fuse them with :func:`~sparsebridge.query.fusion.fuse`: the result equals the exact
fusion of the same legs, ties included.

After :meth:`Qdrant.close` every call raises :class:`~sparsebridge.errors.BackendError`; a
backend does not pickle (it holds a client or an open shard): each process opens its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from sparsebridge.backends.base import Record, WriteStats, point_id
from sparsebridge.backends.qdrant.bodies import (
    Dialect,
    LegVector,
    QdrantSchema,
    WriteGroup,
    hits,
    hybrid_legs,
    plan_writes,
)
from sparsebridge.backends.targets import Target
from sparsebridge.backends.validation import (
    check_dense_queries,
    check_dense_slots,
    check_k,
    check_query,
    check_records,
)
from sparsebridge.errors import BackendError
from sparsebridge.query.fusion import Fusion, fuse, settled_top
from sparsebridge.query.hybrid import HybridQuery
from sparsebridge.types import SearchHit, SparseVector

__all__ = ["Ask", "Qdrant", "QdrantStore"]


class QdrantStore(Protocol):
    """Where a Qdrant backend's points live, and the I/O on them."""

    name: str  # the backend's name in messages and stats
    location: Target
    dialect: Dialect
    text_field: str | None  # the payload field the BM25 leg ranks; None: the store has no BM25 leg

    def ensure_schema(self) -> None:
        """Create the collection, or check that the existing one has the schema's vectors."""
        ...

    def upsert(self, groups: Sequence[WriteGroup]) -> int:
        """Write ``groups`` in order; how many points their conditions left as they were (0 where
        the store cannot tell)."""
        ...

    def delete(self, ids: Sequence[str]) -> None:
        """Delete points by point id (missing ones are ignored)."""
        ...

    def query(self, what: str, requests: Sequence[Any]) -> list[list[Any]]:
        """The scored points of each request (``id``, ``score``, ``payload``), best first."""
        ...

    def count(self) -> int:
        """Number of stored points."""
        ...

    def stored_model(self) -> dict[str, Any] | None:
        """The recorded model identity (None: none, or no collection)."""
        ...

    def store_model(self, identity: Mapping[str, Any]) -> None:
        """Record the model identity."""
        ...

    def close(self) -> None:
        """Release the client or shard."""
        ...


S = TypeVar("S", bound=QdrantStore)
B = TypeVar("B", bound="Qdrant[Any]")


@dataclass(frozen=True)
class Ask:
    """One ranked list to fetch: the top ``k`` by similarity of ``vector`` to the stored vector ``using``
    (for a text, by BM25 over the text field ``using``)."""

    vector: LegVector | str
    using: str
    k: int


class Qdrant(Generic[S]):
    """A Qdrant backend over the store ``store`` (see the module docstring).

    ``vector_name``, ``idf``, ``dense_size`` and ``dense_name`` are the schema's; ``location`` is
    the parsed target the store writes to.
    """

    def __init__(self, store: S, schema: QdrantSchema, *, batch_size: int | None = None) -> None:
        self.name = store.name
        self.location = store.location
        self.schema = schema
        self.vector_name = schema.vector_name
        self.idf = schema.idf
        self.dense_size = schema.dense_size
        self.dense_name = schema.dense_name
        self._store = store
        self._batch_size = batch_size
        self._closed = False

    def _live(self) -> S:
        """The store, unless this backend was closed."""
        if self._closed:
            raise BackendError(
                f"the backend for {self.location.uri} is closed; open a new one", backend=self.name
            )
        return self._store

    def ensure_schema(self) -> None:
        """Create the collection, or check that the existing one has the same vectors.

        Raises:
            SchemaMismatchError: The existing collection has other vectors.
        """
        self._live().ensure_schema()

    def write(self, records: Sequence[Record]) -> WriteStats:
        """Upsert records; returns once the store has them (see the store for durability).

        A record with a ``version`` (the run number) stores it in the payload field ``run`` and is
        upserted under a condition (``run`` < version, or no ``run`` yet): a point already written
        with the same or a newer version is left as it is, and counted in ``WriteStats.stale``
        where the store can tell.
        """
        store = self._live()
        check_records(records)
        check_dense_slots(records, size=self.dense_size, slot=self.schema.dense_slot)
        if not records:
            return WriteStats()
        groups = plan_writes(records, schema=self.schema, dialect=store.dialect, batch_size=self._batch_size)
        stale = store.upsert(groups)
        return WriteStats(written=len(records) - stale, stale=stale)

    def delete(self, document_ids: Sequence[str]) -> None:
        """Delete documents by id (missing ids are ignored)."""
        if isinstance(document_ids, str):
            raise TypeError("pass a list of document ids, not a single string")
        store = self._live()
        if document_ids:
            store.delete([point_id(i) for i in document_ids])

    def search(self, query: SparseVector, *, k: int = 10) -> list[SearchHit]:
        """Top-``k`` hits by sparse dot product."""
        [found] = self.search_batch([query], k=k)
        return found

    def search_batch(self, queries: Sequence[SparseVector], *, k: int = 10) -> list[list[SearchHit]]:
        """Top-``k`` hits for each sparse query, in one batch (an empty query finds nothing)."""
        for query in queries:
            check_query(query)
        check_k(k)
        answers = iter(self._top("search", [Ask(q, self.vector_name, k) for q in queries if len(q)]))
        return [next(answers) if len(q) else [] for q in queries]

    def search_dense_batch(
        self, queries: Sequence[npt.NDArray[np.float32]], *, k: int = 10
    ) -> list[list[SearchHit]]:
        """Top-``k`` hits for each dense query by cosine similarity, in one batch."""
        check_k(k)
        checked = self._require_dense(queries)
        return self._top("dense search", [Ask(q, self.dense_name, k) for q in checked])

    def search_hybrid_batch(
        self, queries: Sequence[HybridQuery], fusion: Fusion, *, k: int = 10
    ) -> list[list[SearchHit]]:
        """Fused top-``k`` hits for each hybrid query: every leg (``candidates`` hits each) in one
        batch, fused by :func:`~sparsebridge.query.fusion.fuse`.

        Raises:
            ValueError: A query has a BM25 leg and the store has none, or the weights do not match
                the legs.
        """
        check_k(k)
        self._require_dense([q.dense for q in queries if q.dense is not None])
        text_field = self._live().text_field
        per_query = []
        for query in queries:
            fusion.leg_weights(len(query.legs))
            per_query.append(
                hybrid_legs(
                    query, sparse_name=self.vector_name, dense_name=self.dense_name, text_field=text_field
                )
            )
        asks = [
            Ask(v, using, q.candidates)
            for q, legs in zip(queries, per_query, strict=True)
            for v, using in legs
        ]
        fetched = iter(self._top("hybrid search", asks))
        return [fuse([next(fetched) for _ in legs], fusion, limit=k) for legs in per_query]

    def _require_dense(self, vectors: Sequence[object]) -> list[npt.NDArray[np.float32]]:
        return check_dense_queries(vectors, size=self.dense_size, slot=self.schema.dense_slot)

    def _top(self, what: str, asks: Sequence[Ask]) -> list[list[SearchHit]]:
        """The top ``k`` of each ask in the one order, in one batch per round: each asks for one
        more than ``k``, then twice as many again where a tie reaches the end of its answer."""
        store = self._live()
        limits = [ask.k + 1 for ask in asks]
        found: dict[int, list[SearchHit]] = {}
        pending = list(range(len(asks)))
        while pending:
            requests = [
                store.dialect.nearest(asks[i].vector, using=asks[i].using, limit=limits[i], with_payload=True)
                for i in pending
            ]
            unsettled = []
            for i, page in zip(pending, store.query(what, requests), strict=True):
                top = settled_top(hits(page), asks[i].k, asked=limits[i])
                if top is None:
                    limits[i] *= 2
                    unsettled.append(i)
                else:
                    found[i] = top
            pending = unsettled
        return [found[i] for i in range(len(asks))]

    def count(self) -> int:
        """Number of stored documents."""
        return self._live().count()

    def stored_model(self) -> dict[str, Any] | None:
        """The model identity recorded with the collection (None: none, or no collection)."""
        return self._live().stored_model()

    def store_model(self, identity: Mapping[str, Any]) -> None:
        """Record the model identity with the collection."""
        self._live().store_model(identity)

    def close(self) -> None:
        """Release the client or shard; later calls raise :class:`~sparsebridge.errors.BackendError`."""
        if not self._closed:
            self._closed = True
            self._store.close()

    def __enter__(self: B) -> B:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            f"a {type(self).__name__} cannot be pickled (it holds a live client or shard): pass its "
            f"target ({self.location.uri}) and open a backend in each process"
        )
