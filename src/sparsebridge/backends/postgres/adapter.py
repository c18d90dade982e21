"""The PostgreSQL + pgvector adapter: connections, transactions, retries (the SQL is in :mod:`.sql`).

Writes: each batch is one transaction: a binary ``COPY`` into the connection's staging table,
then one ``INSERT ... ON CONFLICT (id) DO UPDATE ... WHERE stored.run < excluded.run``. A batch
that fails on a connection error, a deadlock, a serialization failure or a statement timeout is
sent again (the whole transaction: it was rolled back, or it committed and the replay finds the
same run number and counts the rows stale), under the backend's :class:`RetryPolicy`. A row that
PostgreSQL refuses (a NUL character, a vector that does not fit the table) is found by replaying
the batch row by row, each under a savepoint, and reported in a
:class:`~sparsebridge.errors.BulkWriteError` once every other row is written.

Credentials: the target's user and password when given, else libpq's own: ``PGUSER``,
``PGPASSWORD``, ``PGPASSFILE`` / ``~/.pgpass``, ``PGSSLMODE``, ... (psycopg passes the
connection string to libpq, which reads them). Nothing here prints or logs a password.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NoReturn, Self, TypeVar

import numpy as np
import numpy.typing as npt

from sparsebridge.backends.base import Record, WriteStats
from sparsebridge.backends.postgres import sql
from sparsebridge.backends.retry import RetryPolicy, call_with_retry
from sparsebridge.backends.targets import Target, parse_target
from sparsebridge.backends.validation import (
    check_dense_queries,
    check_dense_slots,
    check_k,
    check_query,
    check_records,
)
from sparsebridge.errors import (
    BackendError,
    BulkWriteError,
    ItemFailure,
    MissingExtraError,
    SchemaMismatchError,
)
from sparsebridge.query.fusion import Fusion, fuse
from sparsebridge.query.hybrid import HybridQuery, LegKind
from sparsebridge.types import SearchHit, SparseVector

__all__ = ["PostgresBackend", "PostgresTarget", "PruneReport", "SparseIndex"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as e:
        raise MissingExtraError("psycopg", "postgres") from e
    return psycopg


class SparseIndex(str, Enum):
    """How sparse searches run: ``exact`` (a scan, the default) or ``hnsw`` (pgvector's HNSW index)."""

    EXACT = "exact"
    HNSW = "hnsw"


@dataclass(frozen=True)
class PostgresTarget:
    """Where the table lives. ``user``/``password`` None: libpq's defaults (``PG*``, ``.pgpass``)."""

    table: str
    host: str = "127.0.0.1"
    port: int = 5432
    database: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def conninfo(self) -> dict[str, Any]:
        """Keyword arguments of ``psycopg.connect`` (only those given: libpq fills in the rest)."""
        given = {"host": self.host, "port": self.port, "dbname": self.database, "user": self.user}
        given["password"] = self.password
        return {k: v for k, v in given.items() if v is not None}


@dataclass
class PruneReport:
    """Vectors cut to pgvector's HNSW budget (1,000 non-zeros), and the weight mass they lost."""

    documents: int = 0
    weight_total: float = 0.0
    weight_dropped: float = 0.0

    @property
    def dropped_fraction(self) -> float:
        """Dropped weight over the pruned vectors' total weight (0.0 when nothing was pruned)."""
        return self.weight_dropped / self.weight_total if self.weight_total else 0.0

    def add(self, before: SparseVector, after: SparseVector) -> None:
        total = float(before.values.astype(np.float64).sum())
        self.documents += 1
        self.weight_total += total
        self.weight_dropped += total - float(after.values.astype(np.float64).sum())


_TRANSIENT_STATES = frozenset({"40001", "40P01", "57014", "55P03"})  # serialization, deadlock, timeouts


_REFUSED_LOGIN = ("authentication failed", "does not exist", "no password supplied", "no pg_hba.conf entry")


def is_transient(error: BaseException) -> bool:
    """Connection failures, server shutdowns and restarts, too many connections, deadlocks,
    serialization failures and statement or lock timeouts: worth sending again."""
    psycopg = _psycopg()
    state = getattr(error, "sqlstate", None)
    if state in _TRANSIENT_STATES or (state or "").startswith(("08", "53", "57P")):
        return True
    if isinstance(error, psycopg.OperationalError) and state is None:
        # no answer: the connection failed or broke; but a refused login or a missing database stays so
        return not any(s in str(error) for s in _REFUSED_LOGIN)
    return isinstance(error, (psycopg.InterfaceError, ConnectionError, TimeoutError))


def _row_failure(error: BaseException | None) -> bool:
    """A refusal of the row's data (class 22: data exception; 23: integrity; 54: program limit)."""
    state = getattr(error, "sqlstate", None) or ""
    return state.startswith(("22", "23", "54"))


class _Pool:
    """Idle connections, one per concurrent caller; a broken connection is closed, not returned."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[Any]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = self._connect()
            with self._lock:
                self._all.append(conn)
        ok = False
        try:
            yield conn
            ok = True
        finally:
            if ok and not conn.closed and conn.info.transaction_status == 0:  # idle, no transaction
                self._idle.put(conn)
            else:
                self._discard(conn)

    def _discard(self, conn: Any) -> None:
        try:
            conn.close()
        finally:
            with self._lock:
                if conn in self._all:
                    self._all.remove(conn)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        while not self._idle.empty():
            self._idle.get_nowait()
        for conn in conns:
            conn.close()


@dataclass
class _Table:
    dimension: int
    hnsw: bool
    comment: str | None


class PostgresBackend:
    """Write and search SPLADE vectors in a PostgreSQL table with pgvector.

    Args:
        target: The table and how to reach its database.
        location: The parsed target URI it came from (:func:`~sparsebridge.backends.open_backend`
            passes it); built from ``target`` when not given.
        dimension: The ``sparsevec`` dimension of a new table (default: pgvector's largest, 10**9,
            so any vocabulary fits; the model identity recorded with the table checks the
            vocabulary). An existing table keeps its own unless this is given (then they must match).
        dense_size: The ``vector`` dimension of the dense column (None: no dense leg).
        text_config: The text search configuration of the full-text column (``english``).
        index: ``exact`` (default): sparse searches scan every row and return the exact top ``k``;
            ``hnsw``: an HNSW index is built (when missing) and searches use it (approximate).
        prune_to_index: With ``hnsw``: cut vectors over 1,000 non-zeros (stored ones when the index
            is built, written ones after) to their 1,000 largest weights, and report the weight
            lost (:attr:`pruned`, and a warning). Without it such vectors are refused.
        ef_search: HNSW candidate list size of a search (``hnsw.ef_search``; at least ``k``).
        hnsw_m, ef_construction: HNSW build parameters.
        batch_size: Rows per transaction.
        retry: Retry policy of transient failures (one deadline per batch or search).
        connect_timeout: Seconds to wait for a connection.
        statement_timeout: Seconds a statement may run before PostgreSQL cancels it (retried as
            transient); None: the server's setting.

    Example:
        >>> b = PostgresBackend(PostgresTarget("docs", host="db", database="app"))
        >>> b.location.uri
        'postgres://db:5432/app/docs'
    """

    name = "postgres"

    def __init__(
        self,
        target: PostgresTarget,
        *,
        location: Target | None = None,
        dimension: int | None = None,
        dense_size: int | None = None,
        text_config: str = "english",
        index: SparseIndex | str = SparseIndex.EXACT,
        prune_to_index: bool = False,
        ef_search: int = 100,
        hnsw_m: int = 16,
        ef_construction: int = 64,
        batch_size: int = 500,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 10.0,
        statement_timeout: float | None = None,
    ) -> None:
        if batch_size <= 0 or ef_search <= 0 or hnsw_m <= 1 or ef_construction <= 0:
            raise ValueError("batch_size, ef_search, hnsw_m and ef_construction must be positive")
        if statement_timeout is not None and statement_timeout <= 0:
            raise ValueError("statement_timeout must be positive (or None)")
        self.target = target
        self.spec = sql.TableSpec(
            target.table,
            dimension=dimension or sql.SPARSEVEC_MAX_DIM,
            dense_size=dense_size,
            text_config=text_config,
        )
        host = f"[{target.host}]" if ":" in target.host else target.host  # an IPv6 address
        self.location = location or parse_target(
            f"postgres://{host}:{target.port}/{target.database or '_'}/{target.table}"
        ).with_credentials(username=target.user, password=target.password)
        self.dense_size = dense_size
        self.index = SparseIndex(index)
        self.prune_to_index = prune_to_index
        self.ef_search = ef_search
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.batch_size = batch_size
        self.retry = retry or RetryPolicy()
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.pruned = PruneReport()
        self._pruned_lock = threading.Lock()  # writers share the backend
        self._dimension_given = dimension is not None
        self._table: _Table | None = None
        self._closed = False
        self._pool = _Pool(self._connect)

    # -- connections ------------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._closed:  # close() emptied the pool: every later use comes here
            raise BackendError(
                f"the backend for {self.location.uri} is closed; open a new one", backend=self.name
            )
        options: dict[str, Any] = {
            "application_name": "sparsebridge",
            "connect_timeout": max(1, round(self.connect_timeout)),
            # no server-side prepared statements: a transaction pooler (PgBouncer) may run each
            # transaction on another server session, and each statement here runs once per batch
            "prepare_threshold": None,
        }
        if self.statement_timeout is not None:
            options["options"] = f"-c statement_timeout={max(1, round(self.statement_timeout * 1000))}"
        return _psycopg().connect(**self.target.conninfo(), **options)

    def _call(self, what: str, fn: Callable[[Any], T], *, attempts: list[int] | None = None) -> T:
        """Run ``fn(connection)`` in one transaction, retrying transient failures; errors are ours."""
        psycopg = _psycopg()

        def attempt() -> T:
            if attempts is not None:
                attempts[0] += 1
            with self._pool.connection() as conn, conn.transaction():
                return fn(conn)

        try:
            return call_with_retry(
                attempt, policy=self.retry, is_transient=is_transient, backend=self.name, what=what
            )
        except BackendError:
            raise
        except psycopg.Error as e:
            state = getattr(e, "sqlstate", None)
            if state is None and any(s in str(e) for s in _REFUSED_LOGIN):
                state = "28000"  # libpq reports a refused login without a SQLSTATE
            raise BackendError(
                f"{what} failed: {_describe(e)}", backend=self.name, status=_status(state)
            ) from e

    # -- schema -----------------------------------------------------------------------------------

    def _describe(self, conn: Any) -> tuple[dict[str, sql.Column], _Table | None]:
        rows = conn.execute(
            sql.describe_sql(),
            {"qualified": sql.ident(self.spec.table), "index": self.spec.hnsw_index},
        ).fetchall()
        found = {name: sql.Column(type_, generated) for name, type_, generated, _, _ in rows}
        if not rows:
            return found, None
        dimension = sql.table_dimension(found)
        return found, _Table(dimension or self.spec.dimension, bool(rows[0][4]), rows[0][3])

    def ensure_schema(self) -> None:
        """Create the table (and the extension) when missing, or check the existing one.

        With ``index="hnsw"`` also build the HNSW index when it is missing: refused (stored vectors
        over 1,000 non-zeros) unless ``prune_to_index``, which prunes them first.

        Raises:
            SchemaMismatchError: The table exists with other columns, or cannot take the index.
        """

        def run(conn: Any) -> _Table:
            found, table = self._describe(conn)
            if table is None:
                for statement in sql.create_sql(self.spec):
                    conn.execute(statement)
                found, table = self._describe(conn)
                assert table is not None
            problems = sql.problems_with(self.spec, found, dimension_given=self._dimension_given)
            if problems:
                raise SchemaMismatchError(
                    f"table {self.spec.table!r} exists with another schema: " + "; ".join(problems),
                    backend=self.name,
                )
            return table

        self._table = self._call("schema check", run)
        if self.index is SparseIndex.HNSW and not self._table.hnsw:
            self._build_hnsw()

    def _spec(self) -> sql.TableSpec:
        """The spec with the table's own dimension (read once from the catalog)."""
        table = self._known()
        if table.dimension == self.spec.dimension:
            return self.spec
        return sql.TableSpec(self.spec.table, table.dimension, self.spec.dense_size, self.spec.text_config)

    def _known(self) -> _Table:
        if self._table is None:
            _, table = self._call("describe table", self._describe)
            if table is None:
                raise BackendError(
                    f"table {self.spec.table!r} does not exist (ingest into it first)",
                    backend=self.name,
                    status=404,
                )
            self._table = table
        return self._table

    def _build_hnsw(self) -> None:
        spec = self._spec()
        table = sql.ident(spec.table)

        def over(conn: Any) -> tuple[int, int]:
            count, most = conn.execute(
                f"SELECT count(*), coalesce(max(nnz), 0) FROM {table} WHERE nnz > {sql.HNSW_MAX_NNZ}"
            ).fetchone()
            return int(count), int(most)

        count, most = self._call("HNSW budget check", over)
        if count and not self.prune_to_index:
            raise SchemaMismatchError(
                f"{count} stored vectors of table {spec.table!r} have more than {sql.HNSW_MAX_NNZ} "
                f"non-zeros (up to {most}): pgvector's HNSW index cannot hold them. Search exactly "
                "(index='exact', the default), or open with prune_to_index=True to keep each "
                f"vector's {sql.HNSW_MAX_NNZ} largest weights",
                backend=self.name,
            )
        if count:
            self._call("prune stored vectors", self._prune_stored)
        statement = sql.create_hnsw_sql(spec, m=self.hnsw_m, ef_construction=self.ef_construction)
        self._call("build the HNSW index", lambda conn: conn.execute(statement))
        assert self._table is not None
        self._table.hnsw = True

    def _prune_stored(self, conn: Any) -> None:
        table = sql.ident(self.spec.table)
        rows = conn.execute(
            f"SELECT id, sparse FROM {table} WHERE nnz > {sql.HNSW_MAX_NNZ}", binary=True
        ).fetchall()
        report = PruneReport()
        dimension = self._known().dimension
        for document_id, data in rows:
            before = sql.parse_sparsevec(data)
            after = before.prune(top_k=sql.HNSW_MAX_NNZ)
            report.add(before, after)
            conn.execute(
                f"UPDATE {table} SET sparse = %s::sparsevec, nnz = %s WHERE id = %s",
                (sql.sparse_literal(after, dimension), len(after), document_id),
            )
        self._report(report)

    def _report(self, report: PruneReport) -> None:
        if not report.documents:
            return
        with self._pruned_lock:
            self.pruned.documents += report.documents
            self.pruned.weight_total += report.weight_total
            self.pruned.weight_dropped += report.weight_dropped
        logger.warning(
            "%s: pruned %d vectors to %d non-zeros for the HNSW index: %.2f%% of their weight mass lost",
            self.name,
            report.documents,
            sql.HNSW_MAX_NNZ,
            100 * report.dropped_fraction,
        )

    def stored_model(self) -> dict[str, Any] | None:
        """The model identity in the table's comment (None: none, or no table)."""
        _, table = self._call("read the model", self._describe)
        return None if table is None else sql.model_from_comment(table.comment)

    def store_model(self, identity: Mapping[str, Any]) -> None:
        """Record the model identity in the table's comment (other keys of a JSON comment are kept)."""

        def run(conn: Any) -> None:
            _, table = self._describe(conn)
            if table is None:
                raise BackendError(f"table {self.spec.table!r} does not exist", backend=self.name, status=404)
            try:
                statement = sql.comment_sql(self.spec, table.comment, identity)
            except ValueError as e:
                raise BackendError(str(e), backend=self.name) from e
            conn.execute(statement)

        self._call("record the model", run)

    # -- writes -----------------------------------------------------------------------------------

    def write(self, records: Sequence[Record]) -> WriteStats:
        """Upsert records, one transaction per ``batch_size`` rows (see the module docstring).

        ``WriteStats.stale`` counts the rows a stored row with the same or a newer run kept out.

        Raises:
            BulkWriteError: Some rows were refused (each named, with its reason); the others were
                written.
        """
        check_records(records)
        check_dense_slots(records, size=self.dense_size, slot="the table's 'dense' column")
        if not records:
            return WriteStats()
        table = self._known()
        hnsw = table.hnsw or self.index is SparseIndex.HNSW
        stats = WriteStats()
        failures: list[ItemFailure] = []
        for start in range(0, len(records), self.batch_size):
            rows, report = [], PruneReport()
            for record in records[start : start + self.batch_size]:
                vector = record.vector
                if hnsw and self.prune_to_index and len(vector) > sql.HNSW_MAX_NNZ:
                    vector = vector.prune(top_k=sql.HNSW_MAX_NNZ)
                    report.add(record.vector, vector)
                problem = sql.row_problem(vector, dimension=table.dimension, hnsw=hnsw)
                if problem is not None:
                    failures.append(ItemFailure(record.document.id, 400, "vector_does_not_fit", problem))
                    continue
                rows.append(sql.Row(record.document, vector, record.dense, record.version))
            self._report(report)
            if rows:
                done, refused = self._write_batch(rows, table.dimension)
                stats.add(done)
                failures += refused
        if failures:
            raise BulkWriteError(
                f"{len(failures)} of {len(records)} rows refused",
                backend=self.name,
                failures=failures,
                stats=stats,
            )
        return stats

    def _write_batch(self, rows: list[sql.Row], dimension: int) -> tuple[WriteStats, list[ItemFailure]]:
        psycopg = _psycopg()
        attempts = [0]
        dense = self.dense_size is not None
        upsert = sql.upsert_sql(self.spec)

        def whole(conn: Any) -> int:
            conn.execute(sql.staging_sql())
            with conn.cursor() as cursor:
                with cursor.copy(sql.copy_sql(dense=dense)) as copy:
                    copy.write(sql.copy_stream(rows, dimension=dimension, dense=dense))
                cursor.execute(upsert)
                return int(cursor.rowcount)

        try:
            written = self._call("write", whole, attempts=attempts)
        except BackendError as e:
            if not _row_failure(e.__cause__):
                raise
            logger.debug("%s: a batch was refused (%s); writing it row by row", self.name, e.__cause__)
        else:
            return self._stats(len(rows), written, attempts[0]), []

        failures: list[ItemFailure] = []

        def one_by_one(conn: Any) -> int:
            failures.clear()
            conn.execute(sql.staging_sql())
            written = 0
            for row in rows:
                try:
                    with conn.transaction(), conn.cursor() as cursor:  # a savepoint
                        with cursor.copy(sql.copy_sql(dense=dense)) as copy:
                            copy.write(sql.copy_stream([row], dimension=dimension, dense=dense))
                        cursor.execute(upsert)
                        written += int(cursor.rowcount)
                        cursor.execute(f"DELETE FROM {sql.STAGING}")
                except psycopg.Error as e:
                    if not _row_failure(e):
                        raise
                    state = getattr(e, "sqlstate", None)
                    failures.append(ItemFailure(row.document.id, _status(state), _kind(e), _describe(e)))
            return written

        first = attempts[0]  # the batch's own attempts; the replay row by row is not a retry
        attempts[0] = 0
        written = self._call("write row by row", one_by_one, attempts=attempts)
        retries = (first - 1) * len(rows) + (attempts[0] - 1) * len(rows)
        sent = len(rows) - len(failures)
        return WriteStats(written=written, stale=sent - written, retries=retries), list(failures)

    @staticmethod
    def _stats(sent: int, written: int, attempts: int) -> WriteStats:
        return WriteStats(written=written, stale=sent - written, retries=(attempts - 1) * sent)

    def delete(self, document_ids: Sequence[str]) -> None:
        if isinstance(document_ids, str):
            raise TypeError("pass a list of document ids, not a single string")
        if not document_ids:
            return
        statement = sql.delete_sql(self.spec)
        ids = list(document_ids)
        self._call("delete", lambda conn: conn.execute(statement, (ids,)))

    def count(self) -> int:
        table = sql.ident(self.spec.table)
        return int(
            self._call("count", lambda conn: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        )

    # -- searches ---------------------------------------------------------------------------------

    def search(self, query: SparseVector, *, k: int = 10) -> list[SearchHit]:
        [hits] = self.search_batch([query], k=k)
        return hits

    def search_batch(self, queries: Sequence[SparseVector], *, k: int = 10) -> list[list[SearchHit]]:
        """Top-``k`` hits for each sparse query, in one statement (exact unless ``index="hnsw"``)."""
        for query in queries:
            check_query(query)
        check_k(k)
        self._known()
        return self._call("search", lambda conn: self._sparse(conn, list(queries), k))

    def _settings(self, conn: Any, limit: int) -> None:
        if self.index is SparseIndex.HNSW:  # the index returns at most ef_search rows
            conn.execute(f"SET LOCAL hnsw.ef_search = {int(max(self.ef_search, limit))}")
        else:  # a scan, even where the table has an HNSW index: the exact top k
            conn.execute("SET LOCAL enable_indexscan = off")

    def _sparse(self, conn: Any, queries: list[SparseVector], k: int) -> list[list[SearchHit]]:
        spec = self._spec()
        results: list[list[SearchHit]] = [[] for _ in queries]
        pending = [n for n, q in enumerate(queries) if len(q)]
        limit = 2 * k
        self._settings(conn, limit)
        while pending:
            literals = [sql.sparse_literal(queries[n], spec.dimension) for n in pending]
            fetched = self._fetch(
                conn, sql.sparse_search_sql(spec, exact=self.index is SparseIndex.EXACT), literals, limit
            )
            retry = []
            for position, n in enumerate(pending):
                rows = fetched.get(position + 1, [])
                rows = [(i, t, m, d, sql.parse_sparsevec(s)) for i, t, m, d, s in rows]
                hits = sql.rescore_sparse(queries[n], rows)
                last = -rows[-1][3] if rows else 0.0
                exact = sql.complete(
                    hits, len(rows), k=k, limit=limit, last=last, slack=sql.sparse_slack(queries[n], last)
                )
                if self.index is SparseIndex.HNSW or exact:
                    results[n] = hits[:k]
                else:
                    retry.append(n)
            pending, limit = retry, limit * 4
        return results

    @staticmethod
    def _fetch(conn: Any, statement: str, queries: list[str], limit: int) -> dict[int, list[Any]]:
        rows = conn.execute(statement, {"queries": queries, "limit": limit}, binary=True).fetchall()
        grouped: dict[int, list[Any]] = {}
        for n, *rest in rows:
            grouped.setdefault(int(n), []).append(tuple(rest))
        return grouped

    def search_dense_batch(
        self, queries: Sequence[npt.NDArray[np.float32]], *, k: int = 10
    ) -> list[list[SearchHit]]:
        """Top-``k`` hits by cosine similarity for each dense query (exact), in one statement."""
        check_k(k)
        checked = check_dense_queries(queries, size=self.dense_size, slot="the table's 'dense' column")
        self._known()
        return self._call("dense search", lambda conn: self._dense(conn, checked, k))

    def _dense(self, conn: Any, queries: list[npt.NDArray[np.float32]], k: int) -> list[list[SearchHit]]:
        results: list[list[SearchHit]] = [[] for _ in queries]
        pending, limit = list(range(len(queries))), 2 * k
        spec = self._spec()
        while pending:
            literals = [sql.dense_literal(queries[n]) for n in pending]
            fetched = self._fetch(conn, sql.dense_search_sql(spec), literals, limit)
            retry = []
            for position, n in enumerate(pending):
                rows = [(i, t, m, d, sql.parse_vector(s)) for i, t, m, d, s in fetched.get(position + 1, [])]
                hits = sql.rescore_dense(queries[n], rows)
                last = 1.0 - rows[-1][3] if rows else 0.0
                if sql.complete(hits, len(rows), k=k, limit=limit, last=last, slack=sql.DENSE_SLACK):
                    results[n] = hits[:k]
                else:
                    retry.append(n)
            pending, limit = retry, limit * 4
        return results

    def search_text_batch(self, queries: Sequence[str], *, k: int = 10) -> list[list[SearchHit]]:
        """Top-``k`` hits by ``ts_rank_cd`` (PostgreSQL's cover density ranking, not BM25) for each
        query text; a hit has at least one of the query's terms. Ties: by document id."""
        check_k(k)
        texts = list(queries)
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise ValueError("text queries must be non-blank strings")
        self._known()
        return self._call("text search", lambda conn: self._text(conn, texts, k))

    def _text(self, conn: Any, texts: list[str], k: int) -> list[list[SearchHit]]:
        fetched = self._fetch(conn, sql.text_search_sql(self._spec()), texts, k)
        return [
            [SearchHit(i, float(d), sql.payload(i, t, m)) for i, t, m, d in fetched.get(n + 1, [])]
            for n in range(len(texts))
        ]

    def search_hybrid_batch(
        self, queries: Sequence[HybridQuery], fusion: Fusion, *, k: int = 10
    ) -> list[list[SearchHit]]:
        """Fused top-``k`` hits for each hybrid query: every leg of every query in one transaction
        (one statement per leg kind), fused client-side by :mod:`sparsebridge.query.fusion`."""
        check_k(k)
        for query in queries:
            fusion.leg_weights(len(query.legs))
        dense = [q.dense for q in queries if q.dense is not None]
        check_dense_queries(dense, size=self.dense_size, slot="the table's 'dense' column")
        self._known()

        def run(conn: Any) -> list[list[SearchHit]]:
            legs: dict[tuple[int, LegKind], list[SearchHit]] = {}
            by_kind: dict[LegKind, list[int]] = {kind: [] for kind in LegKind}
            for n, query in enumerate(queries):
                for kind in query.legs:
                    by_kind[kind].append(n)
            for kind, numbers in by_kind.items():
                for candidates in sorted({queries[n].candidates for n in numbers}):
                    same = [n for n in numbers if queries[n].candidates == candidates]
                    found = self._leg(conn, kind, [queries[n] for n in same], candidates)
                    legs.update({(n, kind): hits for n, hits in zip(same, found, strict=True)})
            return [
                fuse([legs[(n, kind)] for kind in query.legs], fusion, limit=k)
                for n, query in enumerate(queries)
            ]

        return self._call("hybrid search", run)

    def _leg(self, conn: Any, kind: LegKind, queries: list[HybridQuery], k: int) -> list[list[SearchHit]]:
        if kind is LegKind.SPARSE:
            return self._sparse(conn, [q.sparse for q in queries if q.sparse is not None], k)
        if kind is LegKind.DENSE:
            return self._dense(conn, [q.dense for q in queries if q.dense is not None], k)
        return self._text(conn, [q.text for q in queries if q.text is not None], k)

    def close(self) -> None:
        """Close the connections; later calls raise :class:`~sparsebridge.errors.BackendError`."""
        self._closed = True
        self._pool.close()

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            f"a {type(self).__name__} cannot be pickled (it holds live connections): pass its target "
            f"({self.location.uri}) and open a backend in each process"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _status(state: str | None) -> int:
    """An HTTP-like status for a SQLSTATE (the dead letters' and errors' ``status``)."""
    if state is None:
        return 503
    if state.startswith("28") or state == "42501":
        return 403  # authentication or privilege
    if state == "42P01":
        return 404  # no such table
    if state.startswith(("22", "23", "54")):
        return 400
    if state.startswith(("08", "53", "57")) or state in _TRANSIENT_STATES:
        return 503
    return 500


def _kind(error: BaseException) -> str:
    state = getattr(error, "sqlstate", None)
    return f"{type(error).__name__} ({state})" if state else type(error).__name__


def _describe(error: BaseException) -> str:
    """The server's message (first line), never the connection string."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
