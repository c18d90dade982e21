"""Recall of OpenSearch's k-NN leg (Lucene HNSW, the adapter's mapping) against exact cosine.

    scripts/opensearch.sh start   # with OPENSEARCH_VERSION=... OPENSEARCH_PLUGINS=knn
    python bench/knn_recall.py --url http://127.0.0.1:9250 --json bench/results/knn-recall.jsonl

Indexes MiniLM vectors of ``tests/data/minibeir`` (or ``--dataset``) in chunks of 40 documents (a
few segments, as a real index has), then sends each query's knn clause with several beams (the
clause's ``k``) and ``size`` = the hits wanted, and compares the hits with the exact cosine top-k
computed here. Prints one JSON line per (beam, size); ``--json`` appends them with the node's
version and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import opensearchpy

from sparsebridge.backends.opensearch import bodies
from sparsebridge.encoder.dense import DenseEncoder
from sparsebridge.eval import load_beir

DATASET = Path(__file__).parents[1] / "tests" / "data" / "minibeir"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True, help="an OpenSearch node with the k-NN plugin")
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--json", type=Path, help="append the results to this JSON Lines file")
    args = parser.parse_args()

    dataset = load_beir(args.dataset)
    documents = list(dataset.corpus.values())
    dense = DenseEncoder.load("minilm", device="cpu")
    stored = dense.encode_documents([d.text for d in documents])
    queries = dense.encode_queries(list(dataset.queries.values()))
    unit = stored / np.linalg.norm(stored, axis=1, keepdims=True)
    cosine = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T

    client = opensearchpy.OpenSearch(hosts=[args.url], timeout=60)
    about: dict[str, Any] = client.info()
    index = f"knn-recall-{uuid.uuid4().hex[:8]}"
    mapping = {"properties": {"dense": bodies.knn_vector_mapping(dense.dimension)}}
    settings = {"index": {**bodies.KNN_SETTINGS, "number_of_shards": 1, "number_of_replicas": 0}}
    client.indices.create(index=index, body={"settings": settings, "mappings": mapping})
    try:
        for start in range(0, len(documents), 40):
            lines: list[dict[str, Any]] = []
            for n in range(start, min(start + 40, len(documents))):
                lines += [{"index": {"_index": index, "_id": str(n)}}, {"dense": stored[n].tolist()}]
            client.bulk(body=lines, refresh=True)
        segments = len(client.cat.segments(index=index, format="json"))
        for size in (10, 100):
            for beam in sorted({size, 2 * size, bodies.knn_candidates(size)}):
                recalls, identical, error = [], 0, 0.0
                for q, query in enumerate(queries):
                    clause = bodies.knn_clause(query.tolist(), k=beam)
                    answer = client.search(
                        index=index, body={"size": size, "query": clause, "_source": False}
                    )
                    hits = answer["hits"]["hits"]
                    got = [int(h["_id"]) for h in hits]
                    want = [int(n) for n in np.argsort(-cosine[q], kind="stable")[:size]]
                    recalls.append(len(set(got) & set(want)) / size)
                    identical += got == want
                    error = max([error] + [abs(2 * h["_score"] - 1 - cosine[q][int(h["_id"])]) for h in hits])
                row = {
                    "opensearch": about["version"]["number"],
                    "documents": len(documents),
                    "segments": segments,
                    "queries": len(queries),
                    "size": size,
                    "beam": beam,
                    f"recall@{size}": round(float(np.mean(recalls)), 4),
                    "identical_lists": identical,
                    "max_abs_cosine_error": float(f"{error:.2g}"),
                }
                print(json.dumps(row))
                if args.json:
                    with args.json.open("a") as out:
                        machine = {"machine": platform.platform(), "cpus": os.cpu_count()}
                        load = {"load_1min": round(os.getloadavg()[0], 1)}
                        out.write(json.dumps({**row, **machine, **load}) + "\n")
    finally:
        client.indices.delete(index=index)
        client.close()


if __name__ == "__main__":
    main()
