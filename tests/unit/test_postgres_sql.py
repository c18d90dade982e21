"""The PostgreSQL builders as data: target URIs, the table, the binary COPY stream, the upsert, the
searches, the parsers, the completeness rule of exact searches, and the failure classification."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from sparsebridge.backends import Engine, PostgresBackend, open_backend, parse_target
from sparsebridge.backends.model_identity import MODEL_KEY
from sparsebridge.backends.postgres import sql
from sparsebridge.backends.postgres.adapter import PostgresTarget, is_transient
from sparsebridge.types import Document, SearchHit, SparseVector


def test_postgres_target_uris() -> None:
    for scheme in ("postgres", "postgresql"):
        t = parse_target(f"{scheme}://app@db.internal:5433/shop/products")
        assert (t.engine, t.host, t.port, t.database, t.name) == (
            Engine.POSTGRES,
            "db.internal",
            5433,
            "shop",
            "products",
        )
        assert t.identity() == f"{scheme}://db.internal:5433/shop/products"
    assert parse_target("postgres://db/shop/products").port == 5432
    for bad in (
        "postgres://db/products",
        "postgres://db//products",
        "postgres://db/shop/a/b",
        "postgres://db/shop/",
    ):
        with pytest.raises(ValueError, match="DATABASE/TABLE"):
            parse_target(bad)
    backend = open_backend("postgres://db:5433/shop/products", dense_size=8)
    assert isinstance(backend, PostgresBackend) and backend.location == parse_target(
        "postgres://db:5433/shop/products"
    )
    assert backend.target == PostgresTarget("products", host="db", port=5433, database="shop")
    with pytest.raises(ValueError, match="do not apply to postgres"):
        open_backend("postgres://db/shop/products", idf=True)


def test_a_backend_built_without_a_uri_has_its_location() -> None:
    backend = PostgresBackend(PostgresTarget("t", host="::1", database="db", user="app", password="s3cret"))
    assert backend.location.identity() == "postgres://[::1]:5432/db/t"
    assert backend.location.username == "app" and "s3cret" not in repr(backend.location)


def test_a_password_is_not_in_the_targets_repr() -> None:
    target = PostgresTarget("t", user="app", password="s3cret")
    assert "s3cret" not in repr(target) and target.conninfo()["password"] == "s3cret"
    assert "password" not in PostgresTarget("t").conninfo()  # libpq's own: PGPASSWORD, .pgpass


def test_table_spec_is_validated() -> None:
    for bad in ("", "a" * 52, 'x"; DROP TABLE y; --', "a b"):
        with pytest.raises(ValueError, match="invalid table name"):
            sql.TableSpec(bad)
    with pytest.raises(ValueError, match="dimension"):
        sql.TableSpec("t", dimension=sql.SPARSEVEC_MAX_DIM + 1)
    with pytest.raises(ValueError, match="text search configuration"):
        sql.TableSpec("t", text_config="english'); DROP")


def test_the_table_and_its_upsert() -> None:
    spec = sql.TableSpec("docs", dimension=30522, dense_size=384)
    create = "\n".join(sql.create_sql(spec))
    for part in (
        'CREATE TABLE IF NOT EXISTS "docs"',
        "id text PRIMARY KEY",
        "run bigint,",
        "metadata jsonb NOT NULL",
        "sparse sparsevec(30522) NOT NULL",
        "dense vector(384),",
        "tsv tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED",
        'CREATE INDEX IF NOT EXISTS "docs_tsv" ON "docs" USING gin (tsv)',
    ):
        assert part in create
    upsert = sql.upsert_sql(spec)
    assert upsert.startswith(
        'INSERT INTO "docs" AS stored (id, run, metadata, text, nnz, sparse, dense) SELECT'
    )
    assert (
        "ON CONFLICT (id) DO UPDATE SET run = excluded.run," in upsert and "dense = excluded.dense" in upsert
    )
    assert upsert.endswith("WHERE stored.run IS NULL OR excluded.run IS NULL OR stored.run < excluded.run")
    assert "dense" not in sql.upsert_sql(sql.TableSpec("docs"))
    assert sql.create_hnsw_sql(spec, m=16, ef_construction=64) == (
        'CREATE INDEX IF NOT EXISTS "docs_sparse_hnsw" ON "docs" USING hnsw (sparse sparsevec_ip_ops) '
        "WITH (m = 16, ef_construction = 64)"
    )


def test_schema_problems() -> None:
    spec = sql.TableSpec("docs", dimension=30522)
    assert sql.problems_with(spec, spec.columns(), dimension_given=True) == []
    other = dict(spec.columns()) | {"sparse": sql.Column("sparsevec(1000)")}
    assert sql.problems_with(spec, other, dimension_given=False) == []  # the table's own dimension
    assert sql.problems_with(spec, other, dimension_given=True) == [
        "column 'sparse' is sparsevec(1000), wanted sparsevec(30522)"
    ]
    assert sql.table_dimension(other) == 1000
    spaced = dict(spec.columns()) | {
        "tsv": sql.Column("tsvector", "to_tsvector('english'::regconfig,  text)")
    }
    assert sql.problems_with(spec, spaced, dimension_given=True) == []
    assert sql.problems_with(spec, {"id": sql.Column("integer")}, dimension_given=True)[0] == (
        "column 'id' is integer, wanted text"
    )


def test_the_binary_copy_stream_is_pgvectors_format() -> None:
    vector = SparseVector.from_dict({0: 0.5, 7: 1.25, 30521: 3.0})
    dense = np.array([0.5, -1.0], dtype=np.float32)
    row = sql.Row(Document("é-1", "text ü", {"k": "v"}), vector, dense, 3)
    stream = sql.copy_stream(
        [row, sql.Row(Document("2", "t"), vector, None, None)], dimension=30522, dense=True
    )
    assert stream.startswith(b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8) and stream.endswith(b"\xff\xff")
    fields, offset = [], 19
    for _ in range(2):
        (count,) = struct.unpack_from(">h", stream, offset)
        offset += 2
        row_fields = []
        for _ in range(count):
            (size,) = struct.unpack_from(">i", stream, offset)
            offset += 4
            row_fields.append(None if size == -1 else stream[offset : offset + size])
            offset += max(size, 0)
        fields.append(row_fields)
    first, second = fields
    assert first[0] == "é-1".encode() and struct.unpack(">q", first[1] or b"") == (3,)
    assert first[2] == b"\x01" + json.dumps({"k": "v"}, ensure_ascii=False).encode()  # jsonb version 1
    assert first[3] == "text ü".encode() and struct.unpack(">i", first[4] or b"") == (3,)
    assert first[5] == struct.pack(">iiiiiifff", 30522, 3, 0, 0, 7, 30521, 0.5, 1.25, 3.0)  # 0-based
    assert first[6] == struct.pack(">hhff", 2, 0, 0.5, -1.0)
    assert second[1] is None and second[6] is None  # no run number, no dense vector: NULL
    assert sql.parse_sparsevec(first[5] or b"") == vector
    assert sql.parse_vector(first[6] or b"").tolist() == [0.5, -1.0]


def test_text_literals_are_one_based_and_exact_in_float32() -> None:
    rng = np.random.default_rng(0)
    values = rng.random(200).astype(np.float32) + np.float32(1e-6)
    vector = SparseVector(np.arange(0, 400, 2), values)
    literal = sql.sparse_literal(vector, 30522)
    assert literal.startswith("{1:") and literal.endswith("}/30522")
    pairs = [p.split(":") for p in literal[1 : literal.index("}")].split(",")]
    assert [int(i) - 1 for i, _ in pairs] == vector.indices.tolist()
    assert np.array_equal(np.array([float(v) for _, v in pairs], dtype=np.float32), vector.values)  # strtof
    assert sql.dense_literal(np.array([0.25, -1.5], dtype=np.float32)) == "[0.25,-1.5]"


def test_the_model_is_kept_in_a_json_comment() -> None:
    spec = sql.TableSpec("docs")
    identity = {"model": "it's a \\ model", "vocab_size": 3}
    statement = sql.comment_sql(spec, '{"owner": "app"}', identity)
    assert statement.startswith('COMMENT ON TABLE "docs" IS E\'')
    quoted = statement[len('COMMENT ON TABLE "docs" IS E\'') : -1]
    stored = quoted.replace("''", "'").replace("\\\\", "\\")
    assert json.loads(stored) == {"owner": "app", MODEL_KEY: identity}
    assert sql.model_from_comment(stored) == identity
    assert sql.model_from_comment("a comment of the app's") is None and sql.model_from_comment(None) is None
    with pytest.raises(ValueError, match="not sparsebridge's"):
        sql.comment_sql(spec, "a comment of the app's", identity)


def test_row_problems() -> None:
    wide = SparseVector(np.arange(1001), np.ones(1001, np.float32))
    assert sql.row_problem(wide, dimension=30522, hnsw=False) is None
    assert "at most 1000" in (sql.row_problem(wide, dimension=30522, hnsw=True) or "")
    assert "outside" in (sql.row_problem(SparseVector.from_dict({5: 1.0}), dimension=5, hnsw=False) or "")
    huge = SparseVector(np.arange(16001), np.ones(16001, np.float32))
    assert "at most 16000" in (sql.row_problem(huge, dimension=30522, hnsw=False) or "")


def test_an_exact_search_is_complete_only_when_nothing_unfetched_can_beat_its_last_hit() -> None:
    hits = [SearchHit(f"d{i}", s) for i, s in enumerate([5.0, 4.0, 3.0])]
    assert sql.complete(hits, 3, k=2, limit=4, last=3.0, slack=0.0)  # fewer rows than asked: all of them
    assert sql.complete(hits, 4, k=2, limit=4, last=3.9, slack=0.01)  # 4.0 > 3.9 + 0.01
    assert not sql.complete(hits, 4, k=2, limit=4, last=3.995, slack=0.01)  # an unfetched row may score 4.005
    assert not sql.complete(hits, 4, k=2, limit=4, last=4.0, slack=0.0)  # a tie may hide a smaller id
    assert sql.complete(hits[:1], 4, k=2, limit=4, last=0.0, slack=0.0)  # rows of score 0 were reached
    query = SparseVector.from_dict({i: 1.0 for i in range(33)})
    assert sql.sparse_slack(query, 2.0) == pytest.approx(2.0 * 34 * 2**-23, rel=1e-6)


def test_rescoring_is_float64_with_ties_by_id() -> None:
    query = SparseVector.from_dict({1: 1.0, 2: 1.0})
    rows = [
        ("b", "t", {}, -2.0, SparseVector.from_dict({1: 1.0, 2: 1.0})),
        ("a", "t", {}, -2.0, SparseVector.from_dict({1: 2.0})),
        ("c", "t", {}, 0.0, SparseVector.from_dict({9: 1.0})),
    ]
    hits = sql.rescore_sparse(query, rows)
    assert [(h.id, h.score) for h in hits] == [("a", 2.0), ("b", 2.0)]  # ties by id; score 0 dropped
    assert hits[0].payload == {"doc_id": "a", "text": "t", "metadata": {}}


class _Error(Exception):
    def __init__(self, sqlstate: str | None, message: str = "") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def test_failure_classification() -> None:
    import psycopg

    for state in ("40001", "40P01", "57014", "57P01", "08006", "53300"):
        assert is_transient(_Error(state)), state
    for state in ("22021", "23505", "42P01", "42501", "28P01"):
        assert not is_transient(_Error(state)), state
    assert is_transient(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert not is_transient(psycopg.OperationalError('password authentication failed for user "x"'))
