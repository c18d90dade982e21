"""Indexing docs/s through each pipeline framework's own write path vs sparsebridge's ``ingest``.

    python bench/connectors.py                                   # 2,000 documents, splade-tiny on CPU
    python bench/connectors.py --docs 5000 --json bench/results/connectors.jsonl

The same texts, the same encoder (``sparsebridge.Encoder``, loaded and warmed up before any timing)
and the same sink (embedded Qdrant, qdrant-client's local mode, a fresh directory per path):

- ``sparsebridge``: ``sparsebridge.ingest`` (overlapped encode and write, the encoder's batch size).
- ``langchain``: ``QdrantVectorStore.add_texts`` of a store from
  ``sparsebridge_langchain.qdrant_vector_store`` (LangChain embeds and upserts 64 texts at a time).
- ``llamaindex``: ``QdrantVectorStore.add`` of a store from
  ``sparsebridge_llamaindex.qdrant_vector_store`` (64 nodes per batch). LlamaIndex writes a dense
  vector with every node: a constant 4-d one, made before timing.
- ``haystack``: a pipeline ``SparsebridgeSparseDocumentEmbedder -> DocumentWriter(QdrantDocumentStore)``
  run once on every document (the embedder encodes them in one call, the writer upserts 100 at a
  time).

Texts: the 140 passages of ``tests/data/minibeir`` repeated with a running number, ~20 words each.
Each path runs ``--repeat`` times in turn; every run is reported with the load average around it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from haystack import Document as HaystackDocument
from haystack import Pipeline
from haystack.components.writers import DocumentWriter
from haystack_integrations.document_stores.qdrant import QdrantDocumentStore
from llama_index.core.schema import TextNode

from sparsebridge import Document, Encoder, QdrantBackend, QdrantTarget, ingest
from sparsebridge.backends import point_id
from sparsebridge_haystack import SparsebridgeSparseDocumentEmbedder
from sparsebridge_langchain import qdrant_vector_store as langchain_store
from sparsebridge_llamaindex import qdrant_vector_store as llamaindex_store

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "minibeir" / "corpus.jsonl"


def corpus(n: int) -> list[Document]:
    rows = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    return [
        Document(f"{rows[i % len(rows)]['_id']}-{i}", f"{rows[i % len(rows)]['text']} ({i})", {"n": i})
        for i in range(n)
    ]


def run_sparsebridge(docs: list[Document], encoder: Encoder, directory: Path) -> None:
    backend = QdrantBackend(QdrantTarget("bench", path=str(directory)))
    ingest(docs, encoder=encoder, backend=backend)
    backend.close()


def run_langchain(docs: list[Document], encoder: Encoder, directory: Path) -> None:
    backend = QdrantBackend(QdrantTarget("bench", path=str(directory)))
    store = langchain_store(backend, encoder)
    store.add_texts(
        [d.text for d in docs], [dict(d.metadata) for d in docs], ids=[point_id(d.id) for d in docs]
    )
    backend.close()


def run_llamaindex(docs: list[Document], encoder: Encoder, directory: Path, nodes: list[TextNode]) -> None:
    backend = QdrantBackend(QdrantTarget("bench", path=str(directory)), dense_size=4)
    llamaindex_store(backend, encoder).add(nodes)
    backend.close()


def run_haystack(docs: list[Document], encoder: Encoder, directory: Path) -> None:
    store = QdrantDocumentStore(
        path=str(directory), index="bench", use_sparse_embeddings=True, embedding_dim=4, progress_bar=False
    )
    pipeline = Pipeline()
    pipeline.add_component("sparse", SparsebridgeSparseDocumentEmbedder(model=encoder))
    pipeline.add_component("writer", DocumentWriter(store))
    pipeline.connect("sparse.documents", "writer.documents")
    haystack_docs = [HaystackDocument(id=d.id, content=d.text, meta=dict(d.metadata)) for d in docs]
    pipeline.run({"sparse": {"documents": haystack_docs}})
    assert store.count_documents() == len(docs)
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--model", default="splade-tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="append one line per run to this file")
    args = parser.parse_args()

    docs = corpus(args.docs)
    encoder = Encoder.load(args.model, device=args.device)
    encoder.encode_documents([d.text for d in docs[:256]])  # warm-up
    nodes = [
        TextNode(
            id_=point_id(d.id),
            text=d.text,
            metadata=dict(d.metadata),
            excluded_embed_metadata_keys=list(d.metadata),  # encode the text alone, as the others do
            embedding=[0.5, 0.5, 0.5, 0.5],
        )
        for d in docs
    ]
    paths: dict[str, Callable[[Path], None]] = {
        "sparsebridge": lambda d: run_sparsebridge(docs, encoder, d),
        "langchain": lambda d: run_langchain(docs, encoder, d),
        "llamaindex": lambda d: run_llamaindex(docs, encoder, d, nodes),
        "haystack": lambda d: run_haystack(docs, encoder, d),
    }
    base = Path(tempfile.mkdtemp(prefix="bench-connectors-"))
    try:
        for repeat in range(args.repeat):
            for name, run in paths.items():
                directory = base / f"{name}-{repeat}"
                load_before = os.getloadavg()[0]
                start = time.perf_counter()
                run(directory)
                seconds = time.perf_counter() - start
                result: dict[str, Any] = {
                    "bench": "connectors",
                    "path": name,
                    "run": repeat,
                    "docs": len(docs),
                    "seconds": round(seconds, 3),
                    "docs_per_s": round(len(docs) / seconds, 1),
                    "model": args.model,
                    "device": args.device,
                    "sink": "qdrant-client local mode",
                    "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                    "cores": os.cpu_count(),
                    "load_before": round(load_before, 2),
                    "load_after": round(os.getloadavg()[0], 2),
                }
                print(json.dumps(result), flush=True)
                if args.json:
                    with args.json.open("a") as out:
                        out.write(json.dumps(result) + "\n")
                shutil.rmtree(directory, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
