"""Qdrant Edge at corpus scale (up to MS MARCO's 8.8M passages) with bounded memory, benchmark included.

    python bench/qdrant_scale.py --docs 1000000 --storage "index=cold&payload=cold&ids=cold" \
        --json bench/results/qdrant-scale.jsonl
    python bench/qdrant_scale.py --docs 200000 --storage "index=cold&payload=cold&ids=cold&values=float16"

``--storage`` is the target's storage options (docs/qdrant.md), the URI query of the shard.

Documents are synthetic and SPLADE-shaped (BERT vocabulary, 30,522 dimensions): ~180 non-zeros per
document and ~34 per query (uniform in [n/2, 3n/2], duplicates drawn twice merged), term ids from a
Zipf-like distribution (frequent terms get long posting lists, as in real text), positive
log-normal weights, and a payload like a real one (40 words of text, metadata). They are generated
from a seed in chunks, vectorised; nothing holds every vector: the writer generates and writes chunk
by chunk, and the exact top 10 of the sampled queries is computed by regenerating the same chunks
(``chunk @ queries``, a running top 10 per query).

Phases, each in its own process so that each peak resident set (VmHWM) is its own:

- write: ``backend.write`` of each chunk in batches of ``--batch`` (the store rolls the shard over
  every 100,000 points), then ``optimize()`` and ``close()``, timed apart; sustained points/s
  counts generation and writing together, the next chunk generated in a thread meanwhile (the
  rate of the last half of the run is recorded too, to show whether it holds);
- search: a fresh process opens the shard (``open_s``: the first call), runs ``--queries`` single
  queries and the same queries in batches of 32, p50/p99, and writes each top 10;
- exact: the top 10 of each query by the exact dot product (float64); a differing list counts as a
  tie when every document outside the exact top 10 scores like the exact 10th to float32 precision.

The machine (CPU model and flags, cores, memory) and the load average before and after are
recorded with the result. Run it alone: on a shared machine the timings measure the neighbours too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from sparsebridge.backends import Record, open_backend
from sparsebridge.types import Document, SparseVector

VOCAB = 30522
CHUNK = 50_000
WORDS = (
    "river water flow delta bank flood stream valley bridge planet star orbit moon galaxy telescope "
    "rocket comet protein gene cell enzyme membrane virus vaccine immune compiler python memory thread "
    "cache index query server bread coffee cheese pasta oven sugar flour recipe city train market"
).split()


def memory_mib() -> dict[str, float]:
    """This process's resident set now (VmRSS), at its peak (VmHWM), and the anonymous part now
    (RssAnon: not the page cache of mapped files, which the kernel reclaims under pressure), MiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon"):
            fields[name] = int(value.split()[0]) / 1024
    return {
        "rss_mib": round(fields["VmRSS"], 1),
        "peak_rss_mib": round(fields["VmHWM"], 1),
        "anon_mib": round(fields["RssAnon"], 1),
    }


def machine() -> dict[str, Any]:
    """CPU model and flags, cores, memory (bench/machine.py imports torch; this bench does not)."""
    info: dict[str, str] = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    flags = set(info.get("flags", "").split())
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    cpu = f"{info.get('model name', 'cpu')} (family {info.get('cpu family')}, model {info.get('model')})"
    return {
        "cpu": cpu,
        "flags": [f for f in wanted if f in flags],
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


class Corpus:
    """The synthetic corpus of ``seed``: chunk ``c`` is the same every time it is generated."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        ranks = np.arange(1, VOCAB + 1, dtype=np.float64)
        weights = 1.0 / (ranks + 50.0) ** 0.9
        self.seed = seed
        self.term_order = rng.permutation(VOCAB).astype(np.int64)  # frequent terms spread over ids
        cdf = np.cumsum(weights / weights.sum())
        # inverse CDF on a fine grid: a uniform draw's bin gives its rank (a gather, not a search)
        self.rank_of = np.minimum(np.searchsorted(cdf, (np.arange(1 << 22) + 0.5) / (1 << 22)), VOCAB - 1)

    def vectors(self, rng: np.random.Generator, count: int, mean_nnz: int) -> scipy.sparse.csr_matrix:
        """``count`` rows of about ``mean_nnz`` distinct positive terms each (sorted indices)."""
        sizes = rng.integers(mean_nnz // 2, mean_nnz * 3 // 2 + 1, count)
        rows = np.repeat(np.arange(count, dtype=np.int64), sizes)
        ranks = self.rank_of[rng.integers(0, self.rank_of.size, rows.size)]
        keys = np.sort(rows * VOCAB + self.term_order[ranks])  # by row, then term
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]  # a term drawn twice counts once
        row, col = np.divmod(keys, VOCAB)
        values = (rng.lognormal(-0.5, 0.6, keys.size) + 0.01).astype(np.float32)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=count))])
        return scipy.sparse.csr_matrix((values, col.astype(np.int32), indptr), shape=(count, VOCAB))

    def chunk(self, number: int, size: int) -> scipy.sparse.csr_matrix:
        return self.vectors(np.random.default_rng([self.seed, number]), size, 180)

    def chunks(self, docs: int) -> Iterator[tuple[int, scipy.sparse.csr_matrix]]:
        """(first row, chunk) over the whole corpus, the next one generated in a thread meanwhile."""
        starts = list(range(0, docs, CHUNK))
        with ThreadPoolExecutor(1) as ahead:
            pending = ahead.submit(self.chunk, 0, min(CHUNK, docs))
            for number, start in enumerate(starts):
                chunk = pending.result()
                if number + 1 < len(starts):
                    following = starts[number + 1]
                    pending = ahead.submit(self.chunk, number + 1, min(CHUNK, docs - following))
                yield start, chunk

    def queries(self, count: int) -> scipy.sparse.csr_matrix:
        return self.vectors(np.random.default_rng([self.seed, 1 << 30]), count, 34)


def records(start: int, chunk: scipy.sparse.csr_matrix, text_rng: np.random.Generator) -> list[Record]:
    words = text_rng.integers(0, len(WORDS), (chunk.shape[0], 40))
    out = []
    for offset in range(chunk.shape[0]):
        lo, hi = chunk.indptr[offset], chunk.indptr[offset + 1]
        i = start + offset
        text = " ".join(WORDS[w] for w in words[offset])
        document = Document(f"doc-{i}", text, {"n": i, "shard": i % 16})
        out.append(Record(document, SparseVector(chunk.indices[lo:hi], chunk.data[lo:hi]), version=1))
    return out


def write(uri: str, docs: int, seed: int, batch: int) -> dict[str, Any]:
    corpus = Corpus(seed)
    text_rng = np.random.default_rng(seed + 1)
    backend = open_backend(uri)
    began = time.perf_counter()
    halfway: float | None = None
    written, peak_anon = 0, 0.0
    for start, chunk in corpus.chunks(docs):
        pending = records(start, chunk, text_rng)
        for at in range(0, len(pending), batch):
            backend.write(pending[at : at + batch])
        written += len(pending)
        peak_anon = max(peak_anon, memory_mib()["anon_mib"])
        if halfway is None and written >= docs // 2:
            halfway, halfway_points = time.perf_counter(), written
    ingest_s = time.perf_counter() - began
    tick = time.perf_counter()
    optimized = backend.optimize()  # type: ignore[attr-defined]
    optimize_s = time.perf_counter() - tick
    tick = time.perf_counter()
    backend.close()
    close_s = time.perf_counter() - tick
    assert halfway is not None
    return {
        "ingest_s": round(ingest_s, 1),
        "points_per_s": round(docs / ingest_s, 1),
        "points_per_s_second_half": round((docs - halfway_points) / (began + ingest_s - halfway), 1),
        "optimize_s": round(optimize_s, 1),
        "optimized": optimized,
        "close_s": round(close_s, 2),
        "writer": memory_mib() | {"peak_anon_mib_sampled_per_chunk": peak_anon},
    }


def search(uri: str, seed: int, queries: int, out: str) -> dict[str, Any]:
    matrix = Corpus(seed).queries(queries)
    rows = [slice(matrix.indptr[i], matrix.indptr[i + 1]) for i in range(queries)]
    vectors = [SparseVector(matrix.indices[row], matrix.data[row]) for row in rows]
    tick = time.perf_counter()
    backend = open_backend(uri)
    count = backend.count()  # type: ignore[attr-defined]
    open_s = time.perf_counter() - tick
    single, found = [], []
    for vector in vectors:
        tick = time.perf_counter()
        hits = backend.search(vector, k=10)
        single.append(time.perf_counter() - tick)
        found.append([h.id for h in hits])
    batched = []
    for at in range(0, queries, 32):
        tick = time.perf_counter()
        answers = backend.search_batch(vectors[at : at + 32], k=10)  # type: ignore[attr-defined]
        batched.append((time.perf_counter() - tick, len(answers)))
        for i, hits in enumerate(answers, start=at):
            if [h.id for h in hits] != found[i]:
                raise AssertionError(f"query {i}: the batched top 10 differs from the single one")
    backend.close()
    Path(out).write_text(json.dumps(found))

    def ms(values: list[float], q: float) -> float:
        return round(float(np.percentile(values, q)) * 1000, 2)

    return {
        "points": count,
        "open_s": round(open_s, 2),
        "single_p50_ms": ms(single, 50),
        "single_p99_ms": ms(single, 99),
        "batch32_call_p50_ms": ms([t for t, _ in batched], 50),
        "batch32_call_p99_ms": ms([t for t, _ in batched], 99),
        "batch32_per_query_p50_ms": ms([t / n for t, n in batched], 50),
        "searcher": memory_mib(),
    }


def exact(docs: int, seed: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Each query's exact top 10 (rows, best first, ties by document id) and the 10th score."""
    corpus = Corpus(seed)
    matrix = corpus.queries(queries).astype(np.float64).T.tocsc()
    best_scores = np.full((queries, 10), -np.inf)
    best_rows = np.zeros((queries, 10), dtype=np.int64)
    for start, chunk in corpus.chunks(docs):
        scores = (chunk.astype(np.float64) @ matrix).toarray().T  # queries x rows
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], axis=1)
        merged_rows = np.concatenate([best_rows, top + start], axis=1)
        for q in range(queries):
            order = sorted(range(20), key=lambda j: (-merged_scores[q, j], f"doc-{merged_rows[q, j]}"))[:10]
            best_scores[q], best_rows[q] = merged_scores[q, order], merged_rows[q, order]
    return best_rows, best_scores


def compare(
    found: list[list[str]], rows: np.ndarray, scores: np.ndarray, docs: int, seed: int
) -> dict[str, Any]:
    """Per query: equal, tie (documents outside the exact 10 score like the 10th; checked on the
    regenerated rows), the same 10 in another order, or differs; and the mean overlap."""
    corpus = Corpus(seed)
    outcome = {"top10_equal": 0, "top10_tie": 0, "top10_same_set_other_order": 0, "top10_differs": 0}
    suspects: dict[int, list[tuple[int, int]]] = {}
    overlap = 0
    for q, got in enumerate(found):
        got_rows = [int(g.removeprefix("doc-")) for g in got]
        overlap += len(set(got_rows) & set(rows[q].tolist()))
        if got_rows == rows[q].tolist():
            outcome["top10_equal"] += 1
        elif len(got_rows) != 10:
            outcome["top10_differs"] += 1
        elif set(got_rows) == set(rows[q].tolist()):
            outcome["top10_same_set_other_order"] += 1
        else:
            for r in got_rows:
                if r not in rows[q]:
                    suspects.setdefault(r // CHUNK, []).append((q, r))
    if suspects:
        queries = corpus.queries(len(found)).astype(np.float64)
        bad: set[int] = set()
        for number, pairs in suspects.items():
            chunk = corpus.chunk(number, min(CHUNK, docs - number * CHUNK)).astype(np.float64)
            for q, r in pairs:
                score = float(chunk[r - number * CHUNK].multiply(queries[q]).sum())
                tenth = scores[q, -1]
                if abs(score - tenth) > 1e-6 * max(tenth, 1e-9):
                    bad.add(q)
        ties = {q for pairs in suspects.values() for q, _ in pairs} - bad
        outcome["top10_tie"] += len(ties)
        outcome["top10_differs"] += len(bad)
    return {**outcome, "top10_overlap_mean": round(overlap / (10 * len(found)), 4)}


def child(phase: str, *args: str) -> dict[str, Any]:
    """Run ``phase`` of this script in a fresh process; its JSON answer."""
    done = subprocess.run(
        [sys.executable, __file__, "--phase", phase, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {phase} phase failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def du_mib(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200, help="sampled queries (default 200)")
    parser.add_argument("--batch", type=int, default=1000, help="documents per write (default 1000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--storage", default="", help="the target's storage options, e.g. large")
    parser.add_argument("--dir", type=Path, help="where the shard goes (default: a temporary directory)")
    parser.add_argument("--json", type=Path, help="append the result line here")
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("--phase", choices=["write", "search"], help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "write":
        print(json.dumps(write(args.uri, args.docs, args.seed, args.batch)))
        return 0
    if args.phase == "search":
        print(json.dumps(search(args.uri, args.seed, args.queries, args.out)))
        return 0
    before, began = os.getloadavg(), time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        uri = f"qdrant+edge://{tmp}/scale" + (f"?{args.storage}" if args.storage else "")
        common = ["--docs", str(args.docs), "--seed", str(args.seed), "--uri", uri]
        written = child("write", *common, "--batch", str(args.batch))
        disk = du_mib(Path(tmp) / "scale")
        found_file = str(Path(tmp) / "found.json")
        searched = child("search", *common, "--queries", str(args.queries), "--out", found_file)
        found = json.loads(Path(found_file).read_text())
    tick = time.perf_counter()
    rows, scores = exact(args.docs, args.seed, args.queries)
    outcome = compare(found, rows, scores, args.docs, args.seed)
    line = {
        "bench": "qdrant_scale",
        "machine": machine(),
        "python": sys.version.split()[0],
        "load_avg_before": [round(x, 2) for x in before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "note": args.note,
        "docs": args.docs,
        "queries": args.queries,
        "storage": args.storage or "default",
        **written,
        "disk_mib": disk,
        **searched,
        **outcome,
        "exact_s": round(time.perf_counter() - tick, 1),
        "wall_s": round(time.perf_counter() - began, 1),
    }
    print(json.dumps(line, indent=2))
    if args.json is not None:
        with args.json.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
