"""Query throughput of one shared Encoder called from 1 and from N threads (one query per call).

    PYTHONPATH=src python bench/threads.py --json bench/results/threads.jsonl

This is how a web app serves searches: each request encodes one query on a shared Encoder. The
same queries run through sentence-transformers' ``encode_query`` (one thread, one query per call)
as the baseline of the same run. Every threaded result is compared with the sequential one.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encode import machine, make_texts

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run_threads(encode: Any, queries: list[str], threads: int) -> tuple[float, list[Any]]:
    """Seconds for ``threads`` threads to encode ``queries`` one per call, and the results in order."""
    results: list[Any] = [None] * len(queries)
    next_index = iter(range(len(queries)))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            try:
                [results[i]] = encode([queries[i]])
            except BaseException as e:
                errors.append(e)
                return

    workers = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - start
    if errors:
        raise errors[0]
    return seconds, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="splade-tiny", help="a path, hub name or bundled short name")
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--words", type=int, default=6, help="words per query")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="append results to this JSON Lines file")
    parser.add_argument("--label", default="")
    args = parser.parse_args()

    from sentence_transformers import SparseEncoder

    from sparsebridge.encoder import Encoder
    from sparsebridge.encoder.models import resolve_model

    path = resolve_model(args.model)
    encoder = Encoder.load(path, device=args.device)
    queries = make_texts(encoder.model.tokenizer, args.queries, args.words, seed=3)
    reference = SparseEncoder(path, device=args.device)
    for query in queries[:20]:  # warm-up
        reference.encode_query([query])
        encoder.encode_queries([query])

    rows: list[dict[str, Any]] = []

    def record(config: str, seconds: float) -> None:
        rows.append(
            {"config": config, "queries": len(queries), "seconds": seconds, "qps": len(queries) / seconds}
        )
        print(f"{config:<40} {len(queries) / seconds:8.1f} queries/s ({seconds:.2f} s)")

    seconds, _ = run_threads(reference.encode_query, queries, 1)
    record("sentence-transformers, 1 thread", seconds)
    sequential: list[Any] = []
    for threads in args.threads:
        seconds, vectors = run_threads(encoder.encode_queries, queries, threads)
        if not sequential:
            sequential = vectors
        for a, b in zip(vectors, sequential, strict=True):
            assert np.array_equal(a.indices, b.indices) and np.array_equal(a.values, b.values)
        record(f"sparsebridge, {threads} thread{'s' * (threads > 1)}", seconds)
    load = os.getloadavg()
    print(f"machine: {machine()}, torch threads {torch.get_num_threads()}, load average {load[0]:.1f}")
    if args.json:
        entry = {
            "bench": "threads",
            "model": args.model,
            "device": args.device,
            "machine": machine(),
            "torch_threads": torch.get_num_threads(),
            "load_average_1m": load[0],
            "words_per_query": args.words,
            "label": args.label,
            "results": rows,
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        with args.json.open("a") as f:
            f.write(json.dumps(entry) + "\n")


if __name__ == "__main__":
    main()
