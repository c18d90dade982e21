"""What sparsebridge sends to Qdrant, built as data; no I/O.

The decisions are made once here, for both Python APIs of Qdrant: qdrant-client's models
(:data:`CLIENT`, used by the store in :mod:`.adapter`) and Qdrant Edge's classes (:data:`EDGE`,
used by the store in :mod:`.edge`). A :class:`Dialect` only spells the planned objects in its
API's types: a nearest-neighbour request, a point, the condition of a versioned write.

- The collection (:class:`QdrantSchema`): one named sparse vector (``splade`` by default), the IDF
  modifier off unless asked (SPLADE weights already encode importance), and optionally a named
  dense vector (cosine).
- Points: id ``point_id(document id)`` (UUIDv5, so rewrites are idempotent), the payload
  ``{"doc_id", "text", "metadata"}``, plus ``run`` for a versioned write (:func:`plan_writes`),
  which is sent with the condition "``run`` < version, or no ``run`` yet".
- Searches: one nearest request per query (or per hybrid leg), every ``limit`` explicit (Qdrant's
  default is 10). Hybrid queries fetch their legs in one batch and are fused client-side by
  :mod:`sparsebridge.query.fusion`, so a hybrid result equals the exact fusion of the legs,
  ties included (:func:`hybrid_legs`).
- The BM25 leg (Qdrant Edge only): a full-text index on the payload field ``text``
  (:data:`TEXT_FIELD`) that records term frequencies and document lengths
  (:func:`edge_text_index`: word tokenizer, lowercase, no stemming and no stop words, close to
  OpenSearch's ``standard`` analyzer), ranked by a ``TextQuery`` with BM25's defaults.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from sparsebridge.backends.base import Record, point_id, stored_payload
from sparsebridge.errors import MissingExtraError
from sparsebridge.query.hybrid import HybridQuery, LegKind
from sparsebridge.types import SearchHit, SparseVector

__all__ = [
    "CLIENT",
    "EDGE",
    "TEXT_FIELD",
    "Dialect",
    "Leg",
    "LegVector",
    "QdrantSchema",
    "WithPayload",
    "WriteGroup",
    "check_vector_names",
    "edge_text_index",
    "hits",
    "hybrid_legs",
    "plan_writes",
    "qdrant_client_module",
    "qdrant_edge_module",
]

LegVector = SparseVector | npt.NDArray[np.float32]
Leg = tuple[LegVector | str, str]  # a query vector or text, and the stored vector or text field it searches
TEXT_FIELD = "text"  # the payload field of the document text (``stored_payload``), the BM25 leg's field
WithPayload = bool | list[str]


def qdrant_client_module() -> Any:
    """The ``qdrant_client`` module, or an install hint when the ``qdrant`` extra is missing."""
    try:
        import qdrant_client
    except ImportError as e:
        raise MissingExtraError("qdrant-client", "qdrant") from e
    return qdrant_client


def qdrant_edge_module() -> Any:
    """The ``qdrant_edge`` module, or an install hint when the ``qdrant-edge`` extra is missing."""
    try:
        import qdrant_edge
    except ImportError as e:
        raise MissingExtraError("qdrant-edge-py", "qdrant-edge") from e
    return qdrant_edge


def check_vector_names(vector_name: str, dense_name: str, dense_size: int | None) -> None:
    """The collection's vector slots, as both Qdrant stores take them (checked before any I/O).

    Raises:
        ValueError: The names are empty or equal, or ``dense_size`` is not a positive integer.
    """
    if not vector_name or not dense_name or vector_name == dense_name:
        raise ValueError("vector_name and dense_name must be distinct non-empty names")
    if dense_size is not None and (
        isinstance(dense_size, bool) or not isinstance(dense_size, int) or dense_size <= 0
    ):
        raise ValueError(f"dense_size must be a positive integer, got {dense_size!r}")


@dataclass(frozen=True)
class QdrantSchema:
    """The vectors of a collection: the sparse slot, its IDF modifier, an optional dense slot, and
    whether the text gets a BM25 full-text index (``bm25``, Qdrant Edge only)."""

    vector_name: str = "splade"
    idf: bool = False
    dense_size: int | None = None
    dense_name: str = "dense"
    bm25: bool = False

    def __post_init__(self) -> None:
        check_vector_names(self.vector_name, self.dense_name, self.dense_size)

    @property
    def dense_slot(self) -> str:
        """How messages name the dense slot."""
        return f"the collection's {self.dense_name!r} vector"


class Dialect(Protocol):
    """How one Qdrant Python API spells what is planned here."""

    def nearest(self, vector: LegVector | str, *, using: str, limit: int, with_payload: WithPayload) -> Any:
        """A request for the top ``limit`` points by similarity of the stored vector ``using`` to
        ``vector``; for a text, by BM25 over the text index of the payload field ``using``."""
        ...

    def point(self, id_: str, record: Record, schema: QdrantSchema, payload: dict[str, Any]) -> Any:
        """The point that stores ``record`` under ``id_`` with ``payload``."""
        ...

    def older_than(self, version: int) -> Any:
        """The condition of a versioned write: points without a run number, or with an older one."""
        ...


class _ClientDialect:
    """qdrant-client's ``models``."""

    def _vector(self, vector: LegVector) -> Any:
        if isinstance(vector, SparseVector):
            models = qdrant_client_module().models
            return models.SparseVector(indices=vector.indices.tolist(), values=vector.values.tolist())
        return [float(x) for x in vector]

    def nearest(self, vector: LegVector | str, *, using: str, limit: int, with_payload: WithPayload) -> Any:
        if isinstance(vector, str):
            raise ValueError("a qdrant-client store has no BM25 leg (Qdrant Edge has)")
        return qdrant_client_module().models.QueryRequest(
            query=self._vector(vector), using=using, limit=limit, with_payload=with_payload
        )

    def point(self, id_: str, record: Record, schema: QdrantSchema, payload: dict[str, Any]) -> Any:
        """Built without pydantic validation: every field is already checked (``check_records``,
        ``Record``, ``Document``), and re-validating took half the time of building a point."""
        models = qdrant_client_module().models
        sparse = record.vector
        vector: dict[str, Any] = {
            schema.vector_name: models.SparseVector.model_construct(
                indices=sparse.indices.tolist(), values=sparse.values.tolist()
            )
        }
        if record.dense is not None:
            vector[schema.dense_name] = record.dense.tolist()
        return models.PointStruct.model_construct(id=id_, vector=vector, payload=payload)

    def older_than(self, version: int) -> Any:
        models = qdrant_client_module().models
        return models.Filter(
            should=[
                models.FieldCondition(key="run", range=models.Range(lt=version)),
                models.IsEmptyCondition(is_empty=models.PayloadField(key="run")),
            ]
        )


class _EdgeDialect:
    """Qdrant Edge's classes (``qdrant_edge``)."""

    def _vector(self, vector: LegVector) -> Any:
        if isinstance(vector, SparseVector):
            return qdrant_edge_module().SparseVector(vector.indices.tolist(), vector.values.tolist())
        return vector.tolist()

    def nearest(self, vector: LegVector | str, *, using: str, limit: int, with_payload: WithPayload) -> Any:
        qe = qdrant_edge_module()
        if isinstance(vector, str):
            query = qe.TextQuery(using, vector)
        else:
            query = qe.Query.Nearest(self._vector(vector), using=using)
        return qe.QueryRequest(limit=limit, query=query, with_payload=with_payload)

    def point(self, id_: str, record: Record, schema: QdrantSchema, payload: dict[str, Any]) -> Any:
        qe = qdrant_edge_module()
        sparse = record.vector
        vector: dict[str, Any] = {
            schema.vector_name: qe.SparseVector(sparse.indices.tolist(), sparse.values.tolist())
        }
        if record.dense is not None:
            vector[schema.dense_name] = record.dense.tolist()
        return qe.Point(id_, vector, payload)

    def older_than(self, version: int) -> Any:
        qe = qdrant_edge_module()
        return qe.Filter(
            should=[
                qe.FieldCondition(key="run", range=qe.RangeFloat(lt=version)),
                qe.IsEmptyCondition(key="run"),
            ]
        )


CLIENT: Dialect = _ClientDialect()
EDGE: Dialect = _EdgeDialect()


@dataclass(frozen=True)
class WriteGroup:
    """Points upserted in one call: one version (the run number, or None), their ids and condition.

    ``size`` estimates the bytes the records carry (vectors and payload), for a store that checks
    its free space before writing.
    """

    version: int | None
    ids: list[str]
    points: list[Any]
    condition: Any
    size: int


def plan_writes(
    records: Sequence[Record], *, schema: QdrantSchema, dialect: Dialect, batch_size: int | None = None
) -> list[WriteGroup]:
    """The upserts that write ``records``: chunks of ``batch_size`` (None: one chunk), each split by
    version, in input order. A group with a version tags its points with ``run`` and carries the
    condition that leaves points written with the same or a newer version as they are."""
    step = batch_size or max(len(records), 1)
    groups = []
    for start in range(0, len(records), step):
        chunk = records[start : start + step]
        for version in dict.fromkeys(r.version for r in chunk):
            run = {} if version is None else {"run": version}
            ids, points, size = [], [], 0
            for record in chunk:
                if record.version != version:
                    continue
                id_, payload = point_id(record.document.id), stored_payload(record.document) | run
                ids.append(id_)
                points.append(dialect.point(id_, record, schema, payload))
                size += _record_size(record, payload)
            condition = None if version is None else dialect.older_than(version)
            groups.append(WriteGroup(version, ids, points, condition, size))
    return groups


def _record_size(record: Record, payload: dict[str, Any]) -> int:
    dense = 0 if record.dense is None else 4 * record.dense.shape[0]
    return 8 * len(record.vector) + dense + len(json.dumps(payload, ensure_ascii=False))


def hits(points: Sequence[Any]) -> list[SearchHit]:
    """Search hits from either API's scored points (``id``, ``score``, ``payload``), in their order."""
    return [
        SearchHit(
            id=str((p.payload or {}).get("doc_id", p.id)), score=float(p.score), payload=p.payload or {}
        )
        for p in points
    ]


def edge_text_index() -> Any:
    """The Qdrant Edge full-text index of :data:`TEXT_FIELD` that ranks by BM25 (see the module docstring)."""
    qe = qdrant_edge_module()
    return qe.TextIndexParams(
        tokenizer=qe.TokenizerType.Word,
        lowercase=True,
        scoring=qe.TextScoringParams(qe.TextScoringType.Bm25),
    )


def hybrid_legs(
    query: HybridQuery, *, sparse_name: str, dense_name: str, text_field: str | None
) -> list[Leg]:
    """The legs of ``query``, each with the stored vector (or, for BM25, text field) it searches.

    Raises:
        ValueError: The query has a BM25 leg and the store has none (``text_field`` None).
    """
    legs: list[Leg] = []
    for kind in query.legs:
        if kind is LegKind.SPARSE:
            assert query.sparse is not None
            legs.append((query.sparse, sparse_name))
        elif kind is LegKind.DENSE:
            assert query.dense is not None
            legs.append((query.dense, dense_name))
        elif text_field is None:
            raise ValueError(
                "this Qdrant store has no BM25 leg: drop the query text, or use Qdrant Edge "
                "(qdrant+edge://), Elasticsearch or OpenSearch"
            )
        else:
            assert query.text is not None
            legs.append((query.text, text_field))
    return legs
