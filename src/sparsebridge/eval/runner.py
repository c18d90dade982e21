"""End-to-end evaluation: ingest a BEIR corpus, run every mode through a backend and exactly.

Modes: ``sparse`` (always), ``dense`` (with a dense encoder and a backend that stores dense
vectors), ``bm25`` (backends with full-text search: Elasticsearch/OpenSearch, not Qdrant or the
memory reference), ``hybrid`` (the fusion of at least two of those legs). Every mode also runs
with exact in-memory scoring (:class:`~sparsebridge.backends.memory.MemoryBackend`) over the same
vectors; BM25 has no exact reference, so the exact hybrid fuses the exact sparse and dense legs
with the backend's own BM25 leg.

The target must hold nothing before the run: its metrics would otherwise mix in other documents
while the exact reference holds this corpus only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sparsebridge.backends.base import (
    Backend,
    Record,
    SupportsDenseSearch,
    SupportsHybridSearch,
    WriteStats,
    has_text_leg,
)
from sparsebridge.backends.memory import MemoryBackend
from sparsebridge.backends.model_identity import SupportsModelIdentity
from sparsebridge.encoder import Encoder
from sparsebridge.encoder.dense import DenseEncoder
from sparsebridge.errors import InputError
from sparsebridge.eval.beir import BeirDataset
from sparsebridge.eval.metrics import METRICS, evaluate
from sparsebridge.ingest import PipelineOptions, Pruning, ingest
from sparsebridge.query.fusion import Fusion, fuse
from sparsebridge.query.hybrid import HybridQuery
from sparsebridge.search import Searcher, SearchMode
from sparsebridge.types import SearchHit

__all__ = ["EvalReport", "run_eval"]

DEPTH = 100  # Recall@100 and MAP@100 need 100 hits per query


@dataclass
class EvalReport:
    """What :func:`run_eval` measured; :meth:`to_json` is the ``sparsebridge eval`` output."""

    backend: str
    modes: dict[str, dict[str, float]]
    exact: dict[str, dict[str, float]]
    active_dims: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``{"backend", "modes", "exact", "active_dims": {"query", "document"}, "timings"}``."""
        return {
            "backend": self.backend,
            "modes": self.modes,
            "exact": self.exact,
            "active_dims": self.active_dims,
            "timings": self.timings,
        }

    def differences(self) -> dict[str, dict[str, float]]:
        """Backend minus exact, per mode and metric (modes that have an exact counterpart)."""
        return {
            mode: {m: self.modes[mode][m] - self.exact[mode][m] for m in METRICS}
            for mode in self.modes
            if mode in self.exact
        }

    def table(self) -> str:
        """A plain-text table: one row per mode, backend metrics, exact metrics and the difference."""
        header = f"{'mode':<8}" + "".join(f"{m:>12}" for m in METRICS)
        lines = [f"backend: {self.backend}", header]
        diffs = self.differences()
        for mode, values in self.modes.items():
            lines.append(f"{mode:<8}" + "".join(f"{values[m]:>12.4f}" for m in METRICS))
            if mode in self.exact:
                lines.append(f"{'  exact':<8}" + "".join(f"{self.exact[mode][m]:>12.4f}" for m in METRICS))
                lines.append(f"{'  diff':<8}" + "".join(f"{diffs[mode][m]:>+12.4f}" for m in METRICS))
        lines.append(
            f"active dims: query {self.active_dims['query']:.1f}, document {self.active_dims['document']:.1f}"
        )
        lines.append("timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in self.timings.items()))
        return "\n".join(lines)


class _Tee:
    """The sink of an eval's ingest: every record goes to the backend under test and to the exact
    reference; the backend under test records the model (as an ingest into it alone would)."""

    def __init__(self, backend: Backend, exact: MemoryBackend) -> None:
        self.name = backend.name
        self.backend, self.exact = backend, exact
        self.nnz = 0

    def ensure_schema(self) -> None:
        self.backend.ensure_schema()
        self.exact.ensure_schema()

    def write(self, records: Sequence[Record]) -> WriteStats:
        stats = self.backend.write(records)
        self.exact.write(records)
        self.nnz += sum(len(r.vector) for r in records)
        return stats

    def stored_model(self) -> dict[str, Any] | None:
        return self.backend.stored_model() if isinstance(self.backend, SupportsModelIdentity) else None

    def store_model(self, identity: Mapping[str, Any]) -> None:
        if isinstance(self.backend, SupportsModelIdentity):
            self.backend.store_model(identity)


def _timed(timings: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = fn()
    timings[name] = round(time.perf_counter() - start, 4)
    return result


def run_eval(
    dataset: BeirDataset,
    *,
    encoder: Encoder,
    backend: Backend,
    dense_encoder: DenseEncoder | None = None,
    fusion: Fusion | None = None,
    candidates: int = DEPTH,
    batch_size: int = 64,
    top_k: int | None = None,
) -> EvalReport:
    """Ingest ``dataset``'s corpus into ``backend``, then evaluate every mode it supports.

    Args:
        dataset: A loaded BEIR dataset (:func:`~sparsebridge.eval.beir.load_beir`).
        encoder: The sparse encoder (documents and queries).
        backend: Where the corpus is written and searched (its schema is checked or created); it
            must hold no documents yet.
        dense_encoder: Adds the ``dense`` mode and a dense hybrid leg.
        fusion: How the hybrid legs are fused (default: RRF with k=60, unweighted).
        candidates: Hits per hybrid leg before fusion.
        batch_size: Documents per ingest batch.
        top_k: Keep at most this many active dimensions per vector (documents and queries).

    Returns:
        The report: metrics per mode, through the backend and exact, active dims and timings (s).

    Raises:
        InputError: The target already holds documents (nothing is written).
    """
    backend.ensure_schema()
    held = backend.count()
    if held:
        raise InputError(
            f"the {backend.name} target already holds {held} document(s): eval measures a target that holds "
            "its corpus alone; give it a new collection or index (or delete this one); nothing was written"
        )
    fusion = fusion or Fusion()
    timings: dict[str, float] = {}
    exact = MemoryBackend()
    tee = _Tee(backend, exact)
    documents = list(dataset.corpus.values())
    _timed(
        timings,
        "ingest",
        lambda: ingest(
            documents,
            encoder=encoder,
            backend=tee,
            dense_encoder=dense_encoder,
            pipeline=PipelineOptions(batch_size=batch_size),
            pruning=Pruning(top_k=top_k),
        ),
    )
    query_ids = list(dataset.queries)
    texts = [dataset.queries[q] for q in query_ids]
    sparse_queries = _timed(timings, "encode_queries", lambda: encoder.encode_queries(texts, top_k=top_k))
    dense_queries = None
    if dense_encoder is not None:
        dense_queries = _timed(timings, "encode_queries_dense", lambda: dense_encoder.encode_queries(texts))

    runs: dict[str, list[list[SearchHit]]] = {}
    exact_runs: dict[str, list[list[SearchHit]]] = {}
    sparse = Searcher(backend, encoder)
    runs["sparse"] = _timed(timings, "sparse", lambda: sparse.search(texts, k=DEPTH, sparse=sparse_queries))
    exact_runs["sparse"] = _timed(
        timings, "exact_sparse", lambda: exact.search_batch(sparse_queries, k=DEPTH)
    )
    dense_list = list(dense_queries) if dense_queries is not None else None
    has_dense = dense_list is not None and isinstance(backend, SupportsDenseSearch)
    if has_dense:
        assert dense_list is not None and isinstance(backend, SupportsDenseSearch)
        runs["dense"] = _timed(timings, "dense", lambda: backend.search_dense_batch(dense_list, k=DEPTH))
        exact_runs["dense"] = _timed(
            timings, "exact_dense", lambda: exact.search_dense_batch(dense_list, k=DEPTH)
        )
    has_text = has_text_leg(backend)
    if has_text:
        bm25 = Searcher(backend, mode=SearchMode.BM25)
        runs["bm25"] = _timed(timings, "bm25", lambda: bm25.search(texts, k=max(DEPTH, candidates)))

    if (has_dense or has_text) and isinstance(backend, SupportsHybridSearch):
        hybrid = Searcher(
            backend,
            encoder,
            mode=SearchMode.HYBRID,
            dense_encoder=dense_encoder if has_dense else None,
            bm25=has_text,
            fusion=fusion,
            candidates=candidates,
        )
        dense_legs = dense_list if has_dense else None
        queries = hybrid.hybrid_queries(texts, sparse_queries, dense_legs)
        runs["hybrid"] = _timed(
            timings, "hybrid", lambda: hybrid.search(texts, k=DEPTH, sparse=sparse_queries, dense=dense_legs)
        )
        exact_runs["hybrid"] = _timed(
            timings, "exact_hybrid", lambda: _exact_hybrid(exact, queries, fusion, runs.get("bm25"))
        )

    def metrics(results: list[list[SearchHit]]) -> dict[str, float]:
        run = {q: [h.id for h in hits] for q, hits in zip(query_ids, results, strict=True)}
        return {name: round(value, 6) for name, value in evaluate(run, dataset.qrels).items()}

    return EvalReport(
        backend=backend.name,
        modes={mode: metrics(results) for mode, results in runs.items()},
        exact={mode: metrics(results) for mode, results in exact_runs.items()},
        active_dims={
            "query": round(sum(len(q) for q in sparse_queries) / max(len(sparse_queries), 1), 2),
            "document": round(tee.nnz / max(len(documents), 1), 2),
        },
        timings=timings,
    )


def _exact_hybrid(
    exact: MemoryBackend,
    queries: list[HybridQuery],
    fusion: Fusion,
    bm25: list[list[SearchHit]] | None,
) -> list[list[SearchHit]]:
    return [
        fuse(exact.exact_legs(query, text_leg=bm25[n] if bm25 is not None else None), fusion, limit=DEPTH)
        for n, query in enumerate(queries)
    ]
