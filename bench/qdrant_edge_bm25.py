"""Qdrant Edge's BM25 leg against OpenSearch's BM25 (``match``) on the same documents and queries.

    OPENSEARCH_PORT=9261 OPENSEARCH_TRANSPORT_PORT=9361 scripts/opensearch.sh run \\
        .venv/bin/python bench/qdrant_edge_bm25.py --json bench/results/qdrant-edge-bm25.jsonl

Both engines get the same texts of a BEIR-format dataset (default: the test data,
tests/data/minibeir) and the same query texts; only their BM25 legs are searched. Recorded: the
mean and minimum top-10 overlap (|Edge top 10 & OpenSearch top 10| / 10) and each engine's nDCG@10
on the dataset's judgements. The tokenization differs (Edge: word tokenizer, lowercase, no stemming
or stop words; OpenSearch: the ``standard`` analyzer), and so do the defaults around BM25 (Lucene
keeps document lengths in one byte), so the lists are not expected to be equal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from machine import describe
from sparsebridge.backends import Record, open_backend
from sparsebridge.eval import load_beir
from sparsebridge.eval.metrics import evaluate
from sparsebridge.types import Document, SparseVector

K = 10
DATASET = Path(__file__).resolve().parents[1] / "tests" / "data" / "minibeir"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DATASET, help="a BEIR-format directory")
    parser.add_argument("--json", type=Path, help="append the result line here")
    args = parser.parse_args()
    url = os.environ.get("OPENSEARCH_URL")
    if not url:
        parser.error("OPENSEARCH_URL is not set: run this under scripts/opensearch.sh run")
    dataset = load_beir(args.dataset)
    # BM25 legs only: every document gets the same one-term vector
    records = [
        Record(Document(d.id, d.text), SparseVector.from_dict({1: 1.0})) for d in dataset.corpus.values()
    ]
    query_ids, texts = list(dataset.queries), list(dataset.queries.values())
    before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, open_backend(f"qdrant+edge://{tmp}/bm25", bm25=True) as edge:
        edge.write(records)
        edge_hits = edge.search_text_batch(texts, k=K)
    index = f"bm25-compare-{int(time.time())}"
    host = url.split("://", 1)[1]
    with open_backend(f"opensearch://{host}/{index}") as opensearch:
        opensearch.write(records)
        opensearch_hits = opensearch.search_text_batch(texts, k=K)
    overlaps = [
        len({h.id for h in a} & {h.id for h in b}) / K
        for a, b in zip(edge_hits, opensearch_hits, strict=True)
    ]

    def ndcg(found: list[list[object]]) -> float:
        run = {q: [h.id for h in hits] for q, hits in zip(query_ids, found, strict=True)}  # type: ignore[attr-defined]
        return round(evaluate(run, dataset.qrels)["ndcg@10"], 4)

    line = {
        "bench": "qdrant_edge_bm25",
        "machine": describe(),
        "load_avg_before": [round(x, 2) for x in before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "dataset": str(args.dataset.name),
        "documents": len(records),
        "queries": len(texts),
        "top10_overlap_mean": round(sum(overlaps) / len(overlaps), 4),
        "top10_overlap_min": min(overlaps),
        "ndcg@10": {"qdrant-edge": ndcg(edge_hits), "opensearch": ndcg(opensearch_hits)},
        "edge_text_index": "word tokenizer, lowercase, no stemming, no stop words; BM25 k1=1.2 b=0.75",
        "opensearch_text": "standard analyzer, BM25 (Lucene defaults)",
    }
    print(json.dumps(line, indent=2))
    if args.json is not None:
        with args.json.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
