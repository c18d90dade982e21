"""Embedded Qdrant: Qdrant Edge (``qdrant+edge://``) and qdrant-client's local mode, same vectors, one run.

    python bench/qdrant_embedded.py                                # Edge at 10k and 100k, local mode at 10k
    python bench/qdrant_embedded.py --sizes 10000 100000 1000000   # and 1M
    python bench/qdrant_embedded.py --json bench/results/qdrant-embedded.jsonl

(Not named ``qdrant_edge.py``: run as a script, that name would shadow the ``qdrant_edge`` package.)

Vectors are pre-encoded and synthetic, shaped like SPLADE output on the BERT vocabulary (30,522
dimensions): ~180 non-zeros per document and ~34 per query (uniform in [n/2, 3n/2]), term ids
drawn from a Zipf-like distribution (frequent terms have long posting lists, as in real text),
positive weights. Each document carries a payload like a real one (id, 40 words of text,
metadata) and the run number 1, so every write is the guarded upsert the ingest pipeline sends.

Per engine and size:

- ingest: ``backend.write`` of pre-built records in batches (``--batch``), timed alone, then
  ``close()`` (the flush) timed apart;
- queries, in a fresh child process that reopens the collection: ``--queries`` single queries
  (``search``) and the same queries in batches (``search_batch``, ``--query-batch`` per call),
  p50/p99, and the child's resident memory (VmRSS, VmHWM) with the collection open. For Edge
  twice: as written (appendable segments), then after the engine's segment optimizer ran
  (``optimize_s``);
- exactness: every query's top 10 against the exact dot product (float64, scipy CSR); a differing
  list counts as a tie when every document outside the exact top 10 scores like the exact 10th
  to float32 precision.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from sparsebridge.backends import QdrantBackend, QdrantTarget, Record
from sparsebridge.backends.qdrant.edge import QdrantEdgeBackend, QdrantEdgeTarget
from sparsebridge.types import Document, SparseVector

VOCAB = 30522
WORDS = (
    "river water flow delta bank flood stream valley bridge planet star orbit moon galaxy telescope "
    "rocket comet protein gene cell enzyme membrane virus vaccine immune compiler python memory thread "
    "cache index query server bread coffee cheese pasta oven sugar flour recipe city train market"
).split()


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 30} GiB"
    )


def memory_mib() -> dict[str, float]:
    """This process's resident set now (VmRSS) and at its peak (VmHWM), in MiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return {"rss_mib": round(fields["VmRSS"], 1), "peak_rss_mib": round(fields["VmHWM"], 1)}


class Vectors:
    """Deterministic SPLADE-shaped sparse vectors: Zipf-like term ids, positive float32 weights."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        ranks = np.arange(1, VOCAB + 1, dtype=np.float64)
        weights = 1.0 / (ranks + 50.0) ** 0.9
        self.term_order = self.rng.permutation(VOCAB)  # frequent terms spread over the id space
        self.cdf = np.cumsum(weights / weights.sum())

    def draw(self, nnz: int) -> tuple[np.ndarray, np.ndarray]:
        picks: np.ndarray = np.empty(0, dtype=np.int64)
        while picks.size < nnz:
            more = np.searchsorted(self.cdf, self.rng.random(nnz * 2))
            picks = np.unique(np.concatenate([picks, np.minimum(more, VOCAB - 1)]))
        chosen = self.rng.choice(picks, nnz, replace=False)
        indices = np.sort(self.term_order[chosen]).astype(np.int32)
        values = (self.rng.lognormal(-0.5, 0.6, nnz) + 0.01).astype(np.float32)
        return indices, values

    def batch(self, count: int, mean_nnz: int) -> list[tuple[np.ndarray, np.ndarray]]:
        sizes = self.rng.integers(mean_nnz // 2, mean_nnz * 3 // 2 + 1, count)
        return [self.draw(int(n)) for n in sizes]


def documents(
    n: int, batch: int, seed: int
) -> Iterator[tuple[list[Record], list[tuple[np.ndarray, np.ndarray]]]]:
    """Batches of records and their raw vectors, generated lazily."""
    vectors = Vectors(seed)
    text_rng = np.random.default_rng(seed + 1)
    for start in range(0, n, batch):
        count = min(batch, n - start)
        raw = vectors.batch(count, 180)
        records = []
        for offset, (indices, values) in enumerate(raw):
            i = start + offset
            text = " ".join(WORDS[w] for w in text_rng.integers(0, len(WORDS), 40))
            document = Document(f"doc-{i}", text, {"n": i, "shard": i % 16})
            records.append(Record(document, SparseVector(indices, values), version=1))
        yield records, raw


def exact_top10(
    matrix: scipy.sparse.csr_matrix, query: tuple[np.ndarray, np.ndarray]
) -> tuple[list[int], np.ndarray]:
    """The exact top 10 (row numbers, best first, ties by row) and every row's exact score."""
    q = np.zeros(VOCAB, dtype=np.float64)
    q[query[0]] = query[1]
    scores = matrix @ q
    top = np.argpartition(-scores, 10)[:10]
    order = sorted(top.tolist(), key=lambda r: (-scores[r], f"doc-{r}"))
    return order, scores


def compare(got: list[str], want: list[int], scores: np.ndarray) -> str:
    """``equal``, ``tie`` (differs only among documents scored like the 10th) or ``differs``."""
    got_rows = [int(g.removeprefix("doc-")) for g in got]
    if got_rows == want:
        return "equal"
    tenth = scores[want[-1]]
    if len(got_rows) == 10 and all(
        r in want or abs(scores[r] - tenth) <= 1e-6 * max(tenth, 1e-9) for r in got_rows
    ):
        return "tie"
    return "differs"


QUERY_CHILD = r"""
import json, os, sys, time
import numpy as np
from sparsebridge.types import SparseVector
kind, directory, collection, queries_file, query_batch, optimize = sys.argv[1:7]
data = np.load(queries_file, allow_pickle=True)
queries = [SparseVector(i, v) for i, v in zip(data["indices"], data["values"])]
optimize_s = None
if optimize == "1":  # the engine's segment optimizer, run to completion before the queries
    import qdrant_edge
    shard = qdrant_edge.EdgeShard.load(os.path.join(directory, collection))
    t = time.perf_counter(); shard.optimize(); optimize_s = time.perf_counter() - t
    shard.close()
if kind == "edge":
    from sparsebridge.backends.qdrant.edge import QdrantEdgeBackend, QdrantEdgeTarget
    backend = QdrantEdgeBackend(QdrantEdgeTarget(directory, collection))
else:
    from sparsebridge.backends import QdrantBackend, QdrantTarget
    backend = QdrantBackend(QdrantTarget(collection, path=directory))
t = time.perf_counter(); backend.count(); open_s = time.perf_counter() - t
backend.search(queries[0], k=10)  # warm-up, not timed
single, results = [], []
for q in queries:
    t = time.perf_counter(); hits = backend.search(q, k=10); single.append(time.perf_counter() - t)
    results.append([h.id for h in hits])
size = int(query_batch); batched = []
for start in range(0, len(queries) - size + 1, size):  # full batches only
    t = time.perf_counter(); backend.search_batch(queries[start:start + size], k=10)
    batched.append(time.perf_counter() - t)
lines = open("/proc/self/status").read().splitlines()
status = {l.split(":")[0]: int(l.split()[1]) / 1024 for l in lines if l.startswith(("VmRSS", "VmHWM"))}
backend.close()
print(json.dumps({"optimize_s": optimize_s, "open_s": open_s, "single_s": single, "batch_s": batched,
                  "results": results, "rss_mib": round(status["VmRSS"], 1),
                  "peak_rss_mib": round(status["VmHWM"], 1)}))
"""


def percentile_ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(values) * 1000, q)), 2)


def run(kind: str, n: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    directory = root / f"{kind}-{n}"
    shutil.rmtree(directory, ignore_errors=True)
    if kind == "edge":
        backend: Any = QdrantEdgeBackend(QdrantEdgeTarget(str(directory), "bench"))
    else:
        backend = QdrantBackend(QdrantTarget("bench", path=str(directory)))
    backend.ensure_schema()
    rows, cols, vals = [], [], []
    write_s, written = 0.0, 0
    for records, raw in documents(n, args.batch, args.seed):
        t = time.perf_counter()
        backend.write(records)
        write_s += time.perf_counter() - t
        for offset, (indices, values) in enumerate(raw):
            rows.append(np.full(indices.size, written + offset, dtype=np.int32))
            cols.append(indices)
            vals.append(values)
        written += len(records)
        if args.progress:
            print(f"  {kind} {written}/{n} {written / write_s:.0f}/s", file=sys.stderr, flush=True)
    parent_memory = memory_mib()
    t = time.perf_counter()
    backend.close()
    close_s = time.perf_counter() - t
    matrix = scipy.sparse.csr_matrix(
        (np.concatenate(vals).astype(np.float64), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n, VOCAB),
    )
    del rows, cols, vals
    queries = Vectors(args.seed + 7).batch(args.queries if kind == "edge" else args.local_queries, 34)
    queries_file = root / f"queries-{kind}-{n}.npz"
    np.savez(
        queries_file,
        indices=np.array([q[0] for q in queries], dtype=object),
        values=np.array([q[1] for q in queries], dtype=object),
    )
    result: dict[str, Any] = {
        "engine": "qdrant-edge" if kind == "edge" else "qdrant-client local mode",
        "docs": n,
        "batch": args.batch,
        "ingest_points_per_s": round(n / write_s, 1),
        "ingest_s": round(write_s, 2),
        "close_flush_s": round(close_s, 2),
        "ingest_process": parent_memory,
        "queries": len(queries),
        "query_batch": args.query_batch,
    }
    for phase in ("as_written", "optimized") if kind == "edge" else ("as_written",):
        command = [sys.executable, "-c", QUERY_CHILD, kind, str(directory), "bench", str(queries_file)]
        command += [str(args.query_batch), "1" if phase == "optimized" else "0"]
        measured = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        answers = zip(measured["results"], queries, strict=True)
        verdicts = [compare(got, *exact_top10(matrix, q)) for got, q in answers]
        disk = sum(f.stat().st_blocks * 512 for f in directory.rglob("*") if f.is_file())  # allocated
        result[phase] = {
            "optimize_s": None if measured["optimize_s"] is None else round(measured["optimize_s"], 1),
            "open_s": round(measured["open_s"], 2),
            "single_p50_ms": percentile_ms(measured["single_s"], 50),
            "single_p99_ms": percentile_ms(measured["single_s"], 99),
            "batch_call_p50_ms": percentile_ms(measured["batch_s"], 50),
            "batch_call_p99_ms": percentile_ms(measured["batch_s"], 99),
            "batch_per_query_p50_ms": percentile_ms([t / args.query_batch for t in measured["batch_s"]], 50),
            "top10_equal": verdicts.count("equal"),
            "top10_tie": verdicts.count("tie"),
            "top10_differs": verdicts.count("differs"),
            "query_process_rss_mib": measured["rss_mib"],
            "query_process_peak_rss_mib": measured["peak_rss_mib"],
            "disk_mib": round(disk / 2**20, 1),
        }
    print(json.dumps(result), flush=True)
    if not args.keep:
        shutil.rmtree(directory, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="Edge corpus sizes")
    parser.add_argument("--local-sizes", type=int, nargs="*", default=[10_000], help="local-mode sizes")
    parser.add_argument("--batch", type=int, default=1000, help="records per write call")
    parser.add_argument("--queries", type=int, default=500, help="queries timed and checked on Edge")
    parser.add_argument("--local-queries", type=int, default=30, help="the same on local mode (slow)")
    parser.add_argument("--query-batch", type=int, default=32, help="queries per search_batch call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", help="where the shards go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the shards")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--json", help="append the run (machine, load, results) to this JSON Lines file")
    parser.add_argument(
        "--note", default="", help="free text stored with the run (e.g. who shared the machine)"
    )
    args = parser.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench-qdrant-edge-"))
    root.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    started = time.time()
    results = [run("local", n, args, root) for n in args.local_sizes]
    results += [run("edge", n, args, root) for n in args.sizes]
    run_record = {
        "bench": "qdrant_edge",
        "machine": machine(),
        "python": platform.python_version(),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.time() - started, 1),
        "note": args.note,
        "results": results,
    }
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(run_record) + "\n")
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
