"""Pure builders for PostgreSQL + pgvector: the table, the binary COPY stream, the upsert, the
searches, and the parsers of what comes back; no I/O.

The table (``TABLE`` is the target's name; ``V`` the sparse dimension; ``D`` the dense one)::

    id        text PRIMARY KEY      the user's document id
    run       bigint                the run number of the write (NULL: written without one)
    metadata  jsonb NOT NULL        the document's metadata
    text      text NOT NULL         the document's text
    nnz       integer NOT NULL      non-zeros of the sparse vector (HNSW takes at most 1,000)
    sparse    sparsevec(V) NOT NULL the SPLADE vector
    dense     vector(D)             the dense embedding (only when the table has a dense leg)
    tsv       tsvector GENERATED ALWAYS AS (to_tsvector('CONFIG'::regconfig, text)) STORED

plus a GIN index on ``tsv`` and, only when asked for, an HNSW index on ``sparse``
(``sparsevec_ip_ops``). The model identity is the table's comment (a JSON object).

Scores: pgvector's ``<#>`` is the *negative* inner product, computed in float32; ``<=>`` the cosine
distance. The searches fetch more candidates than asked for, with their stored vectors, and the
adapter rescores them in float64 (:func:`rescore_sparse`, :func:`rescore_dense`) and checks that
no unfetched row can still beat the last hit (:func:`complete`), so an exact search returns the
exact reference's hits, scores and order. The text leg ranks with ``ts_rank_cd`` (cover density),
which is PostgreSQL's own ranking, not BM25.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sparsebridge.backends.model_identity import MODEL_KEY
from sparsebridge.types import Document, SearchHit, SparseVector

__all__ = [
    "HNSW_MAX_NNZ",
    "SPARSEVEC_MAX_DIM",
    "SPARSEVEC_MAX_NNZ",
    "Column",
    "TableSpec",
    "comment_sql",
    "complete",
    "copy_sql",
    "copy_stream",
    "create_hnsw_sql",
    "create_sql",
    "delete_sql",
    "dense_literal",
    "dense_search_sql",
    "describe_sql",
    "model_from_comment",
    "parse_sparsevec",
    "parse_vector",
    "problems_with",
    "rescore_dense",
    "rescore_sparse",
    "row_problem",
    "sparse_literal",
    "sparse_search_sql",
    "staging_sql",
    "text_search_sql",
    "upsert_sql",
]

SPARSEVEC_MAX_DIM = 1_000_000_000  # pgvector's largest sparsevec dimension
SPARSEVEC_MAX_NNZ = 16_000  # non-zeros a stored sparsevec may have
HNSW_MAX_NNZ = 1_000  # non-zeros of a sparsevec an HNSW index takes

STAGING = "sparsebridge_staging"  # one temporary table per connection
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$")
_HNSW_SUFFIX = "_sparse_hnsw"
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_NULL = struct.pack(">i", -1)


def ident(name: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """An escape-string SQL literal (``E'...'``): correct whatever ``standard_conforming_strings`` is."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass(frozen=True)
class Column:
    """One column as the catalog describes it: its type (``format_type``) and generation expression."""

    type: str
    generated: str | None = None


@dataclass(frozen=True)
class TableSpec:
    """The table a backend writes to.

    Args:
        table: The table name (letters, digits, ``_`` and ``-``; at most 63 characters, the index
            names add a suffix, so at most 51).
        dimension: The sparse dimension ``V`` (every index must be below it).
        dense_size: The dense dimension ``D``; None: no dense column.
        text_config: The text search configuration of the ``tsv`` column (``english``).
    """

    table: str
    dimension: int = SPARSEVEC_MAX_DIM
    dense_size: int | None = None
    text_config: str = "english"

    def __post_init__(self) -> None:
        if not _NAME.match(self.table) or len(self.table) + len(_HNSW_SUFFIX) > 63:
            raise ValueError(
                f"invalid table name {self.table!r}: use letters, digits, '_' and '-', at most 51 characters"
            )
        if isinstance(self.dimension, bool) or not 1 <= self.dimension <= SPARSEVEC_MAX_DIM:
            raise ValueError(f"dimension must be in [1, {SPARSEVEC_MAX_DIM}], got {self.dimension!r}")
        if self.dense_size is not None and not 1 <= self.dense_size <= 16_000:
            raise ValueError(f"dense_size must be in [1, 16000], got {self.dense_size!r}")
        if not re.match(r"^[a-z_][a-z0-9_]*$", self.text_config):
            raise ValueError(f"invalid text search configuration {self.text_config!r}")

    @property
    def hnsw_index(self) -> str:
        return self.table + _HNSW_SUFFIX

    def columns(self) -> dict[str, Column]:
        """What the catalog must show for this table."""
        wanted = {
            "id": Column("text"),
            "run": Column("bigint"),
            "metadata": Column("jsonb"),
            "text": Column("text"),
            "nnz": Column("integer"),
            "sparse": Column(f"sparsevec({self.dimension})"),
            "tsv": Column("tsvector", f"to_tsvector('{self.text_config}'::regconfig, text)"),
        }
        if self.dense_size is not None:
            wanted["dense"] = Column(f"vector({self.dense_size})")
        return wanted


def create_sql(spec: TableSpec) -> list[str]:
    """Create the table and its text index (nothing when they exist)."""
    t = ident(spec.table)
    dense = f"    dense vector({spec.dense_size}),\n" if spec.dense_size is not None else ""
    return [
        "CREATE EXTENSION IF NOT EXISTS vector",
        f"CREATE TABLE IF NOT EXISTS {t} (\n"
        "    id text PRIMARY KEY,\n"
        "    run bigint,\n"
        "    metadata jsonb NOT NULL,\n"
        "    text text NOT NULL,\n"
        "    nnz integer NOT NULL,\n"
        f"    sparse sparsevec({spec.dimension}) NOT NULL,\n"
        f"{dense}"
        f"    tsv tsvector GENERATED ALWAYS AS (to_tsvector('{spec.text_config}'::regconfig, text)) STORED\n"
        ")",
        f"CREATE INDEX IF NOT EXISTS {ident(spec.table + '_tsv')} ON {t} USING gin (tsv)",
    ]


def describe_sql() -> str:
    """Columns of table ``%(table)s`` (name, type, generation expression), its comment, its HNSW index.

    One row per column; an empty answer: no such table (on the search path).
    """
    return (
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
        "CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END, "
        "obj_description(c.oid, 'pg_class'), "
        "EXISTS (SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
        "JOIN pg_am am ON am.oid = ic.relam WHERE i.indrelid = c.oid AND am.amname = 'hnsw' "
        "AND ic.relname = %(index)s) "
        "FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid "
        "LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum "
        "WHERE c.oid = to_regclass(%(qualified)s) AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum"
    )


def problems_with(spec: TableSpec, found: Mapping[str, Column], *, dimension_given: bool) -> list[str]:
    """How an existing table differs from ``spec`` (empty: it matches).

    With ``dimension_given`` False the table's own sparse dimension is accepted.
    """
    problems = []
    for name, want in spec.columns().items():
        have = found.get(name)
        if have is None:
            problems.append(f"no column {name!r} ({want.type})")
        elif name == "sparse" and not dimension_given and have.type.startswith("sparsevec("):
            continue
        elif have.type != want.type:
            problems.append(f"column {name!r} is {have.type}, wanted {want.type}")
        elif want.generated is not None and _squash(have.generated) != _squash(want.generated):
            problems.append(f"column {name!r} is generated as {have.generated!r}, wanted {want.generated!r}")
    if spec.dense_size is None and "dense" in found:
        problems.append(
            f"column 'dense' ({found['dense'].type}) exists: open with dense_size=<its dimension>"
        )
    return problems


def _squash(expression: str | None) -> str:
    return re.sub(r"\s+", "", expression or "")


def table_dimension(found: Mapping[str, Column]) -> int | None:
    """The sparse dimension a described table has (None: no typed ``sparse`` column)."""
    match = re.fullmatch(r"sparsevec\((\d+)\)", found["sparse"].type) if "sparse" in found else None
    return int(match.group(1)) if match else None


def model_from_comment(comment: str | None) -> dict[str, object] | None:
    """The model identity recorded in a table comment (None: none, or a comment that is not ours)."""
    try:
        data = json.loads(comment) if comment else None
    except ValueError:
        return None
    found = data.get(MODEL_KEY) if isinstance(data, dict) else None
    return dict(found) if isinstance(found, dict) else None


def comment_sql(spec: TableSpec, comment: str | None, identity: Mapping[str, object]) -> str:
    """Record ``identity`` in the table comment, keeping the other keys of a JSON comment.

    Raises:
        ValueError: The table has a comment that is not a JSON object (someone else's: kept).
    """
    try:
        data = json.loads(comment) if comment else {}
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ValueError(f"table {spec.table!r} has a comment that is not sparsebridge's: {comment!r}")
    data[MODEL_KEY] = dict(identity)
    return f"COMMENT ON TABLE {ident(spec.table)} IS {literal(json.dumps(data, sort_keys=True))}"


def create_hnsw_sql(spec: TableSpec, *, m: int, ef_construction: int) -> str:
    return (
        f"CREATE INDEX IF NOT EXISTS {ident(spec.hnsw_index)} ON {ident(spec.table)} "
        f"USING hnsw (sparse sparsevec_ip_ops) WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"
    )


def staging_sql() -> str:
    """The connection's staging table (rows vanish at commit or rollback)."""
    return (
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING} (id text, run bigint, metadata jsonb, "
        "text text, nnz integer, sparse sparsevec, dense vector) ON COMMIT DELETE ROWS"
    )


def copy_sql(*, dense: bool) -> str:
    columns = "id, run, metadata, text, nnz, sparse" + (", dense" if dense else "")
    return f"COPY {STAGING} ({columns}) FROM STDIN (FORMAT BINARY)"


def upsert_sql(spec: TableSpec) -> str:
    """Move the staged rows into the table; a stored row with the same or a newer run is left alone.

    The statement's row count is the rows written; the others of the batch are stale.
    """
    columns = ["id", "run", "metadata", "text", "nnz", "sparse"]
    if spec.dense_size is not None:
        columns.append("dense")
    listed = ", ".join(columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    return (
        f"INSERT INTO {ident(spec.table)} AS stored ({listed}) SELECT {listed} FROM {STAGING} ORDER BY id "
        f"ON CONFLICT (id) DO UPDATE SET {updates} "
        "WHERE stored.run IS NULL OR excluded.run IS NULL OR stored.run < excluded.run"
    )


def delete_sql(spec: TableSpec) -> str:
    return f"DELETE FROM {ident(spec.table)} WHERE id = ANY(%s)"


def _field(data: bytes) -> bytes:
    return struct.pack(">i", len(data)) + data


def sparsevec_bytes(vector: SparseVector, dimension: int) -> bytes:
    """pgvector's binary ``sparsevec``: int32 dim, nnz, 0, the 0-based int32 indices, the float32 values."""
    return (
        struct.pack(">iii", dimension, len(vector), 0)
        + vector.indices.astype(">i4").tobytes()
        + vector.values.astype(">f4").tobytes()
    )


def vector_bytes(vector: npt.NDArray[np.float32]) -> bytes:
    """pgvector's binary ``vector``: int16 dim, int16 0, the float32 values."""
    return struct.pack(">hh", vector.shape[0], 0) + vector.astype(">f4").tobytes()


@dataclass(frozen=True)
class Row:
    """One row to stage: a document, its vectors and its run number."""

    document: Document
    vector: SparseVector
    dense: npt.NDArray[np.float32] | None
    run: int | None


def copy_stream(rows: Iterable[Row], *, dimension: int, dense: bool) -> bytes:
    """The whole ``COPY ... (FORMAT BINARY)`` input for ``rows`` (header, tuples, trailer)."""
    parts = [_COPY_HEADER]
    count = struct.pack(">h", 7 if dense else 6)
    for row in rows:
        metadata = b"\x01" + json.dumps(dict(row.document.metadata), ensure_ascii=False).encode()
        parts += [
            count,
            _field(row.document.id.encode()),
            _NULL if row.run is None else _field(struct.pack(">q", row.run)),
            _field(metadata),
            _field(row.document.text.encode()),
            _field(struct.pack(">i", len(row.vector))),
            _field(sparsevec_bytes(row.vector, dimension)),
        ]
        if dense:
            parts.append(_NULL if row.dense is None else _field(vector_bytes(row.dense)))
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


def row_problem(vector: SparseVector, *, dimension: int, hnsw: bool) -> str | None:
    """Why pgvector would refuse this vector in this table (None: it fits)."""
    if len(vector) and int(vector.indices[-1]) >= dimension:
        return f"index {int(vector.indices[-1])} is outside the table's sparsevec({dimension})"
    if len(vector) > SPARSEVEC_MAX_NNZ:
        return f"{len(vector)} non-zeros: a sparsevec holds at most {SPARSEVEC_MAX_NNZ}"
    if hnsw and len(vector) > HNSW_MAX_NNZ:
        return (
            f"{len(vector)} non-zeros: the table's HNSW index takes at most {HNSW_MAX_NNZ} "
            "(open the backend with prune_to_index=True to keep the largest weights)"
        )
    return None


def sparse_literal(vector: SparseVector, dimension: int) -> str:
    """pgvector's text ``sparsevec`` (1-based indices); each float32 value reads back exactly."""
    pairs = ",".join(
        f"{i + 1}:{float(v)!r}" for i, v in zip(vector.indices.tolist(), vector.values.tolist(), strict=True)
    )
    return f"{{{pairs}}}/{dimension}"


def dense_literal(vector: npt.NDArray[np.float32]) -> str:
    return "[" + ",".join(repr(float(v)) for v in vector.tolist()) + "]"


def parse_sparsevec(data: bytes) -> SparseVector:
    """Read pgvector's binary ``sparsevec`` (see :func:`sparsevec_bytes`)."""
    _dim, nnz, _ = struct.unpack_from(">iii", data)
    indices = np.frombuffer(data, dtype=">i4", count=nnz, offset=12).astype(np.int32)
    values = np.frombuffer(data, dtype=">f4", count=nnz, offset=12 + 4 * nnz).astype(np.float32)
    return SparseVector(indices, values)


def parse_vector(data: bytes) -> npt.NDArray[np.float32]:
    """Read pgvector's binary ``vector`` (see :func:`vector_bytes`)."""
    (dim,) = struct.unpack_from(">h", data)
    return np.frombuffer(data, dtype=">f4", count=dim, offset=4).astype(np.float32)


_HIT_COLUMNS = "x.id, x.text, x.metadata, x.distance"


def sparse_search_sql(spec: TableSpec, *, exact: bool) -> str:
    """Top ``%(limit)s`` rows by inner product for each query of ``%(queries)s`` (text sparsevecs).

    Rows: query number (1-based), id, text, metadata, the float32 ``<#>`` value, the stored vector.
    An exact search breaks ties by id in SQL; an HNSW search orders by the index's distance only.
    """
    order = "t.sparse <#> q.v" + (", t.id" if exact else "")
    return _lateral(spec, "sparsevec", "t.sparse <#> q.v", order, "t.sparse")


def dense_search_sql(spec: TableSpec) -> str:
    """Top ``%(limit)s`` rows by cosine distance (``<=>``) for each query of ``%(queries)s``."""
    return _lateral(spec, "vector", "t.dense <=> q.v", "t.dense <=> q.v, t.id", "t.dense")


def _lateral(spec: TableSpec, kind: str, distance: str, order: str, stored: str) -> str:
    where = " WHERE t.dense IS NOT NULL" if kind == "vector" else ""
    return (
        f"SELECT q.n, {_HIT_COLUMNS}, x.stored FROM unnest(%(queries)s::text[]::{kind}[]) "
        "WITH ORDINALITY AS q(v, n) CROSS JOIN LATERAL ("
        f"SELECT t.id, t.text, t.metadata, {distance} AS distance, {stored} AS stored "
        f"FROM {ident(spec.table)} t{where} ORDER BY {order} LIMIT %(limit)s) x ORDER BY q.n"
    )


def text_search_sql(spec: TableSpec) -> str:
    """Top ``%(limit)s`` rows by ``ts_rank_cd`` for each query text of ``%(queries)s``.

    A row matches when it has any of the query's lexemes (the terms of ``plainto_tsquery`` joined
    with OR, as a ``match`` query joins them). The score column is ``ts_rank_cd`` (float4).
    """
    query = f"replace(plainto_tsquery('{spec.text_config}'::regconfig, q.v)::text, ' & ', ' | ')::tsquery"
    return (
        f"SELECT q.n, {_HIT_COLUMNS} FROM unnest(%(queries)s::text[]) WITH ORDINALITY AS q(v, n) "
        "CROSS JOIN LATERAL ("
        f"SELECT t.id, t.text, t.metadata, ts_rank_cd(t.tsv, {query})::float8 AS distance "
        f"FROM {ident(spec.table)} t WHERE t.tsv @@ {query} "
        "ORDER BY 4 DESC, t.id LIMIT %(limit)s) x ORDER BY q.n, x.distance DESC, x.id"
    )


def payload(document_id: str, text: str, metadata: Mapping[str, object]) -> dict[str, object]:
    """A hit's payload, as every backend returns it."""
    return {"doc_id": document_id, "text": text, "metadata": dict(metadata)}


Candidate = tuple[str, str, Mapping[str, object], float, object]  # id, text, metadata, distance, stored

# The float32 arithmetic of pgvector against float64: each product and each partial sum rounds
# once (relative 2**-24), so a sum of n positive products is within n * 2**-23 of the exact one.
_F32 = 2.0**-23


def rescore_sparse(query: SparseVector, rows: Sequence[Candidate]) -> list[SearchHit]:
    """Exact (float64) inner products of the fetched rows, positive ones only, best first, ties by id."""
    hits = []
    for document_id, text, metadata, _distance, stored in rows:
        assert isinstance(stored, SparseVector)
        score = stored.dot(query)
        if score > 0:
            hits.append(SearchHit(document_id, score, payload(document_id, text, metadata)))
    hits.sort(key=lambda h: (-h.score, h.id))
    return hits


def rescore_dense(query: npt.NDArray[np.float32], rows: Sequence[Candidate]) -> list[SearchHit]:
    """Exact (float64) cosine similarities of the fetched rows, best first, ties by id."""
    unit = query.astype(np.float64) / float(np.linalg.norm(query.astype(np.float64)))
    hits = []
    for document_id, text, metadata, _distance, stored in rows:
        as64 = np.asarray(stored, dtype=np.float64)
        score = float((as64 / float(np.linalg.norm(as64))) @ unit)
        hits.append(SearchHit(document_id, score, payload(document_id, text, metadata)))
    hits.sort(key=lambda h: (-h.score, h.id))
    return hits


def complete(
    hits: Sequence[SearchHit], fetched: int, *, k: int, limit: int, last: float, slack: float
) -> bool:
    """Whether the rescored top ``k`` of ``fetched`` rows (``limit`` asked for) is the exact top ``k``.

    True when the engine returned fewer rows than asked for (it had no more), or when the ``k``-th
    exact score beats every unfetched row's best possible exact score: the last fetched row's
    engine score ``last`` (the float32 value turned back into a score) plus ``slack`` (its error
    bound). An unfetched row scores at most ``last`` in the engine's arithmetic.
    """
    if fetched < limit:
        return True
    if len(hits) < k:  # rows scoring 0 were fetched: every row with a positive score was too
        return last <= 0
    return hits[k - 1].score > last + slack


def sparse_slack(query: SparseVector, bound: float) -> float:
    """How far pgvector's float32 inner product can be from the exact one at score ``bound``."""
    return abs(bound) * (len(query) + 1) * _F32 + 1e-30


DENSE_SLACK = 1e-4  # float32 cosine distance against float64: far below this for any dimension here
