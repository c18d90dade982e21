"""PostgreSQL with pgvector, live (``scripts/postgres.sh``): schema, exactness against the in-memory
reference where pgvector's float32 arithmetic orders rows differently, run numbers, refused rows,
HNSW (its 1,000 non-zero budget, pruning), dense, text and hybrid legs, one statement per batch of
queries, statement timeouts, credentials, and ``eval`` (no loss against exact).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from postgres_server import connect, drop_table, new_table, read_postgres
from sparsebridge.backends import MemoryBackend, PostgresBackend, Record, RetryPolicy, open_backend
from sparsebridge.backends.model_identity import ModelIdentity, check_model
from sparsebridge.backends.postgres import sql
from sparsebridge.errors import BackendError, BackendUnavailableError, BulkWriteError, SchemaMismatchError
from sparsebridge.ingest import ingest
from sparsebridge.query.fusion import Fusion, FusionMethod, fuse
from sparsebridge.query.hybrid import HybridQuery
from sparsebridge.types import Document, SparseVector

DATASET = Path(__file__).parents[1] / "data" / "minibeir"
FAST = RetryPolicy(max_attempts=1, max_total_seconds=1)


@pytest.fixture
def make(postgres_url: str) -> Iterator[Callable[..., PostgresBackend]]:
    """``make(**options)``: a backend on a fresh table (dropped after); ``make(table=...)`` reuses one."""
    opened: list[PostgresBackend] = []
    tables: set[str] = set()

    def build(table: str | None = None, **options: Any) -> PostgresBackend:
        name = table or new_table()
        tables.add(name)
        backend = open_backend(f"{postgres_url}/{name}", **options)
        assert isinstance(backend, PostgresBackend)
        opened.append(backend)
        return backend

    yield build
    for backend in opened:
        backend.close()
    for name in tables:
        drop_table(postgres_url, name)


def _random(n: int, nnz: int, *, seed: int, dense: int | None = None) -> list[Record]:
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        indices = np.sort(rng.choice(5000, nnz, replace=False))
        vector = SparseVector(indices, (rng.random(nnz) + 0.01).astype(np.float32))
        embedding = rng.standard_normal(dense).astype(np.float32) if dense else None
        words = " ".join(rng.choice(["river", "flood", "planet", "orbit", "bread", "flour"], 4))
        records.append(Record(Document(f"d{i:05d}", words, {"n": i}), vector, embedding))
    return records


def test_exact_search_orders_near_ties_by_the_float64_score_not_pgvectors_float32(
    make: Callable[..., PostgresBackend], postgres_url: str
) -> None:
    """pgvector sums the products in float32: 1.0 plus ten products of 4e-8 stays 1.0 there (each is
    under half an ulp), while the exact score is 1.0000004 and beats three rows of 1 + 2**-22. The
    engine's order puts those three first; the backend still returns the exact order and scores."""
    query = SparseVector.from_dict({i: 1.0 for i in range(11)})
    many_small = Record(
        Document("a", "many small"), SparseVector.from_dict({0: 1.0} | {i: 4e-8 for i in range(1, 11)})
    )
    one_big = [
        Record(Document(f"b{i}", "one big"), SparseVector.from_dict({0: 1 + 2**-22})) for i in range(3)
    ]
    backend = make()
    backend.ensure_schema()
    backend.write([many_small, *one_big])
    exact = MemoryBackend()
    exact.write([many_small, *one_big])
    with connect(postgres_url) as conn:  # the engine's own order and values
        statement = (
            f'SELECT id, -(sparse <#> %s::sparsevec) FROM "{backend.spec.table}" '
            "ORDER BY sparse <#> %s::sparsevec, id"
        )
        engine = conn.execute(statement, [sql.sparse_literal(query, backend.spec.dimension)] * 2).fetchall()
    assert [i for i, _ in engine] == ["b0", "b1", "b2", "a"] and engine[-1][1] == 1.0
    for document_id, value in engine:  # within the bound the backend relies on
        true = exact.search(query, k=4)
        score = next(h.score for h in true if h.id == document_id)
        assert abs(value - score) <= sql.sparse_slack(query, value)
    for k in (1, 2, 4):
        got, want = backend.search(query, k=k), exact.search(query, k=k)
        assert [(h.id, h.score) for h in got] == [(h.id, h.score) for h in want]
        assert got[0].id == "a"


def test_the_table_is_created_then_checked(make: Callable[..., PostgresBackend], postgres_url: str) -> None:
    first = make(dense_size=8)
    first.ensure_schema()
    first.ensure_schema()  # the same schema again is fine
    table = first.spec.table
    with connect(postgres_url) as conn:
        columns = dict(
            conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0",
                [f'"{table}"'],
            ).fetchall()
        )
    assert columns == {
        "id": "text",
        "run": "bigint",
        "metadata": "jsonb",
        "text": "text",
        "nnz": "integer",
        "sparse": f"sparsevec({sql.SPARSEVEC_MAX_DIM})",
        "dense": "vector(8)",
        "tsv": "tsvector",
    }
    for options, problem in [
        ({}, "column 'dense' (vector(8)) exists"),
        ({"dense_size": 16}, "column 'dense' is vector(8), wanted vector(16)"),
        ({"dense_size": 8, "text_config": "simple"}, "column 'tsv' is generated as"),
        (
            {"dense_size": 8, "dimension": 30522},
            f"is sparsevec({sql.SPARSEVEC_MAX_DIM}), wanted sparsevec(30522)",
        ),
    ]:
        with pytest.raises(SchemaMismatchError, match="exists with another schema") as info:
            make(table=table, **options).ensure_schema()
        assert problem in str(info.value)
    with connect(postgres_url) as conn:
        conn.execute(f'CREATE TABLE "{table}_app" (id integer PRIMARY KEY, body text)')
    try:
        with pytest.raises(SchemaMismatchError, match="no column 'sparse'"):
            make(table=f"{table}_app").ensure_schema()
    finally:
        drop_table(postgres_url, f"{table}_app")


def test_a_table_of_another_dimension_keeps_it(make: Callable[..., PostgresBackend]) -> None:
    backend = make(dimension=30522)
    backend.ensure_schema()
    reopened = make(table=backend.spec.table)  # no dimension given: the table's own
    reopened.ensure_schema()
    record = Record(Document("x", "text"), SparseVector.from_dict({30521: 1.0}))
    reopened.write([record])
    assert [h.id for h in reopened.search(record.vector)] == ["x"]
    with pytest.raises(BulkWriteError) as info:
        reopened.write([Record(Document("y", "text"), SparseVector.from_dict({30522: 1.0}))])
    assert (
        info.value.failures[0].id == "y"
        and "outside the table's sparsevec(30522)" in info.value.failures[0].reason
    )


def test_the_model_is_recorded_in_the_table_comment_and_another_is_refused(
    make: Callable[..., PostgresBackend], encoder: Any
) -> None:
    backend = make()
    docs = [Document(f"d{i}", f"river flood {i}") for i in range(10)]
    ingest(docs, encoder=encoder, backend=backend, batch_size=4)
    mine = ModelIdentity.of(encoder)
    assert mine is not None and backend.stored_model() == mine.to_json()
    other = ModelIdentity("another/model", 30522, "0" * 64)
    reopened = make(table=backend.spec.table)
    with pytest.raises(SchemaMismatchError, match="written with model"):
        check_model(reopened, other, record=True)
    with pytest.raises(SchemaMismatchError, match="written with model"):
        ingest(docs, encoder=_Renamed(encoder), backend=reopened)
    check_model(reopened, mine, record=True)  # the same model: accepted


class _Renamed:
    """The encoder under another model name (another model, as far as the identity goes)."""

    def __init__(self, encoder: Any) -> None:
        self._encoder = encoder
        self.model_name = "another/model"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)


def test_run_numbers_give_exact_stale_counts(make: Callable[..., PostgresBackend], postgres_url: str) -> None:
    backend = make(batch_size=64)
    backend.ensure_schema()
    old, new = _random(200, 20, seed=1), _random(200, 20, seed=2)  # the same ids, other vectors
    newer = [Record(r.document, r.vector, version=5) for r in new[:120]]
    first = backend.write(newer)
    assert (first.written, first.stale) == (120, 0)
    stats = backend.write([Record(r.document, r.vector, version=4) for r in old])
    assert (stats.written, stats.stale) == (80, 120)  # 120 kept their run 5 vectors
    again = backend.write([Record(r.document, r.vector, version=5) for r in new[:120]])
    assert (again.written, again.stale) == (0, 120)  # a rerun of run 5
    stored = read_postgres(postgres_url, backend.spec.table)
    assert all(len(v) == 1 for v in stored.values()) and len(stored) == 200
    for record in new[:120]:
        assert stored[record.document.id][0] == pytest.approx(record.vector.as_dict())
    for record in old[120:]:
        assert stored[record.document.id][0] == pytest.approx(record.vector.as_dict())
    unversioned = backend.write([Record(r.document, r.vector) for r in old[:10]])
    assert (unversioned.written, unversioned.stale) == (10, 0)  # no run number: an overwrite


def test_no_statement_is_prepared_on_the_server(make: Callable[..., PostgresBackend]) -> None:
    """A transaction pooler (PgBouncer) may run each transaction on another server session: a
    statement prepared on one is missing on the next, so none is prepared, however often it runs."""
    backend = make(batch_size=8)
    backend.ensure_schema()
    records = _random(96, 12, seed=3)
    backend.write(records)  # 12 batches on the one connection of a single writer
    for record in records[:12]:
        backend.search(record.vector, k=3)

    def prepared(conn: Any) -> int:
        return int(conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0])

    assert backend._call("count prepared statements", prepared) == 0


def test_refused_rows_reach_the_dead_letters_and_the_others_are_written(
    make: Callable[..., PostgresBackend], encoder: Any, tmp_path: Path
) -> None:
    backend = make(batch_size=32)
    good = [Document(f"g{i}", f"river flood {i}") for i in range(100)]
    poison = [
        Document("nul-in-text", "river \x00 flood"),  # PostgreSQL text holds no NUL character
        Document("nul-in-metadata", "river flood", {"note": "a\u0000b"}),  # neither does jsonb
    ]
    documents = good[:40] + poison[:1] + good[40:70] + poison[1:] + good[70:]
    run_dir = tmp_path / "run"
    stats = ingest(
        documents,
        encoder=encoder,
        backend=backend,
        batch_size=32,
        run_dir=run_dir,
        max_dead_letter_fraction=0.05,
    )
    letters = [json.loads(line) for line in (run_dir / "dead_letter.jsonl").read_text().splitlines()]
    assert sorted(d["id"] for d in letters) == sorted(d.id for d in poison)
    assert all(d["status"] == 400 and "(22" in d["type"] for d in letters), letters
    assert stats.written == 100 and stats.dead_lettered == 2 and stats.retries == 0
    assert backend.count() == 100


def test_hnsw_refuses_vectors_over_its_budget_or_prunes_them_and_reports_the_loss(
    make: Callable[..., PostgresBackend], caplog: pytest.LogCaptureFixture, postgres_url: str
) -> None:
    records = _random(300, 40, seed=3)
    rng = np.random.default_rng(4)
    wide = SparseVector(np.arange(1200), (rng.random(1200) + 0.01).astype(np.float32))
    records.append(Record(Document("wide", "river"), wide))
    exact = make()
    exact.ensure_schema()
    exact.write(records)
    table = exact.spec.table
    with pytest.raises(
        SchemaMismatchError, match=r"1 stored vectors .* more than 1000 non-zeros \(up to 1200\)"
    ):
        make(table=table, index="hnsw").ensure_schema()
    pruned = make(table=table, index="hnsw", prune_to_index=True)
    with caplog.at_level("WARNING"):
        pruned.ensure_schema()
    kept = wide.prune(top_k=1000)
    lost = 1 - float(kept.values.astype(np.float64).sum()) / float(wide.values.astype(np.float64).sum())
    assert pruned.pruned.documents == 1 and pruned.pruned.dropped_fraction == pytest.approx(lost)
    assert f"{100 * lost:.2f}% of their weight mass lost" in caplog.text
    # the stored vector is the pruned one now; writes over the budget: refused, or pruned when asked
    assert read_postgres(postgres_url, table)["wide"][0] == pytest.approx(kept.as_dict())
    wider = Record(Document("wider", "river"), SparseVector(np.arange(1500), np.ones(1500, np.float32)))
    with pytest.raises(BulkWriteError) as info:
        make(table=table, index="hnsw").write([wider, records[0]])
    assert [f.id for f in info.value.failures] == ["wider"] and "at most 1000" in info.value.failures[
        0
    ].reason
    assert info.value.stats is not None and info.value.stats.written == 1
    pruned.write([wider])
    assert pruned.pruned.documents == 2


def test_hnsw_search_is_approximate_and_exact_mode_ignores_the_index(
    make: Callable[..., PostgresBackend], postgres_url: str
) -> None:
    records = _random(3000, 60, seed=5)
    exact = make(batch_size=1000)
    exact.ensure_schema()
    exact.write(records)
    reference = MemoryBackend()
    reference.write(records)
    queries = [r.vector.prune(top_k=20) for r in _random(30, 60, seed=6)]
    hnsw = make(table=exact.spec.table, index="hnsw", ef_search=40)
    hnsw.ensure_schema()
    with connect(postgres_url) as conn:
        [(indexed,)] = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE tablename = %s AND indexdef LIKE '%%hnsw%%'",
            [exact.spec.table],
        ).fetchall()
    assert indexed == 1
    approximate = hnsw.search_batch(queries, k=10)
    recall = np.mean(
        [
            len({h.id for h in got} & {h.id for h in reference.search(q, k=10)}) / 10
            for q, got in zip(queries, approximate, strict=True)
        ]
    )
    print(f"\nHNSW recall@10 {recall:.3f} (ef_search 40, 3000 rows of 60 non-zeros)")
    assert recall >= 0.5
    for query, hits in zip(queries, exact.search_batch(queries, k=10), strict=True):  # the index is there
        assert [(h.id, h.score) for h in hits] == [(h.id, h.score) for h in reference.search(query, k=10)]


def test_dense_text_and_hybrid_legs(make: Callable[..., PostgresBackend]) -> None:
    records = _random(400, 30, seed=7, dense=8)
    backend = make(dense_size=8)
    backend.ensure_schema()
    backend.write(records)
    reference = MemoryBackend()
    reference.write(records)
    rng = np.random.default_rng(8)
    dense_queries = [rng.standard_normal(8).astype(np.float32) for _ in range(10)]
    for got, want in zip(
        backend.search_dense_batch(dense_queries, k=10),
        reference.search_dense_batch(dense_queries, k=10),
        strict=True,
    ):
        assert [h.id for h in got] == [h.id for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], rel=1e-12)
    [text] = backend.search_text_batch(["rivers flooding"], k=400)
    assert text and all({"river", "flood"} & set(h.payload["text"].split()) for h in text)  # any term
    assert [h.score for h in text] == sorted((h.score for h in text), reverse=True)
    assert all(a.id < b.id for a, b in itertools.pairwise(text) if a.score == b.score)  # ties by id
    sparse_queries = [r.vector.prune(top_k=10) for r in _random(5, 30, seed=9)]
    for method in FusionMethod:
        fusion = Fusion(method, k=60, weights=(1.0, 0.5, 2.0))
        queries = [
            HybridQuery(sparse=s, dense=d, text="river orbit", candidates=25)
            for s, d in zip(sparse_queries, dense_queries, strict=False)
        ]
        got = backend.search_hybrid_batch(queries, fusion, k=10)
        for query, hits in zip(queries, got, strict=True):
            [text_leg] = backend.search_text_batch([query.text or ""], k=25)
            want = fuse(reference.exact_legs(query, text_leg=text_leg), fusion, limit=10)
            assert [h.id for h in hits] == [h.id for h in want], method
            assert [h.score for h in hits] == pytest.approx([h.score for h in want], rel=1e-9)


def test_a_batch_of_queries_is_one_statement(make: Callable[..., PostgresBackend]) -> None:
    records = _random(200, 30, seed=10)
    backend = make()
    backend.ensure_schema()
    backend.write(records)
    statements: list[str] = []
    fetch = backend._fetch

    def spy(conn: Any, statement: str, queries: list[str], limit: int) -> Any:
        statements.append(statement)
        return fetch(conn, statement, queries, limit)

    backend._fetch = spy  # type: ignore[method-assign]
    hits = backend.search_batch([r.vector for r in records[:40]], k=5)
    assert len(statements) == 1 and len(hits) == 40
    assert [h[0].id for h in hits] == [r.document.id for r in records[:40]]  # each finds itself first


def test_a_statement_timeout_is_retried_under_the_deadline_then_named(
    make: Callable[..., PostgresBackend], postgres_url: str
) -> None:
    records = _random(50, 10, seed=11)
    setup = make()
    setup.ensure_schema()
    table = setup.spec.table
    policy = RetryPolicy(initial_wait=0.1, max_wait=0.5, max_total_seconds=3)
    backend = make(table=table, statement_timeout=0.3, retry=policy)
    backend.ensure_schema()
    with connect(postgres_url) as locker:
        locker.execute("BEGIN")
        locker.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')  # every write waits, then times out
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match="statement timeout") as info:
            backend.write(records)
        elapsed = time.monotonic() - started
        assert 3 <= elapsed < 8 and "write failed after" in str(info.value)
        release = threading.Timer(1.5, lambda: locker.execute("ROLLBACK"))
        release.start()
        stats = backend.write(records)  # the lock goes within the deadline: retried, then written
        release.join()
    assert stats.written == 50 and stats.retries >= 50
    assert backend.count() == 50


def test_credentials_come_from_the_uri_or_libpq_and_a_refused_login_fails_at_once(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = tmp_path / "pgpass"
    wrong.write_text("*:*:*:*:not-the-password\n")
    wrong.chmod(0o600)
    where = urlsplit(postgres_url)
    with_password = (
        f"postgres://sparsebridge:uri-s3cret@{where.hostname}:{where.port}{where.path}/{new_table()}"
    )
    for uri, secret in [(f"{postgres_url}/{new_table()}", "not-the-password"), (with_password, "uri-s3cret")]:
        monkeypatch.setenv("PGPASSFILE", str(wrong))  # libpq's password file: used when the URI has none
        backend = open_backend(uri)
        assert backend.location.username == "sparsebridge" and secret not in repr(backend.location)
        started = time.monotonic()
        with pytest.raises(BackendError, match="password authentication failed") as info:
            backend.ensure_schema()
        assert time.monotonic() - started < 5  # not retried: a refused login stays refused
        assert secret not in str(info.value) and info.value.status == 403
        backend.close()


def test_eval_on_postgres_loses_nothing_against_exact(postgres_url: str, tmp_path: Path) -> None:
    """``sparsebridge eval`` through PostgreSQL: every metric of every mode with an exact counterpart
    equals the exact one (the report's diff rows are all +0.0000)."""
    table = new_table("eval")
    command = [sys.executable, "-m", "sparsebridge.cli", "eval", "--model", "splade-tiny"]
    command += [
        "--dataset",
        str(DATASET),
        "--to",
        f"{postgres_url}/{table}",
        "--output",
        str(tmp_path / "r.json"),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    finally:
        drop_table(postgres_url, table)
    assert done.returncode == 0, done.stderr[-3000:]
    print("\n" + done.stdout)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["modes"]["sparse"] == report["exact"]["sparse"]
    assert report["modes"]["hybrid"] == report["exact"]["hybrid"]
    diffs = [line for line in done.stdout.splitlines() if line.strip().startswith("diff")]
    assert len(diffs) == 2 and all(set(line.split()[1:]) == {"+0.0000"} for line in diffs)
