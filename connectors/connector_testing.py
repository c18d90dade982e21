"""Helpers shared by the connectors' tests: the backends to run on, the exact reference, ranking checks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from sparsebridge import (
    Backend,
    DenseEncoder,
    Document,
    Encoder,
    Fusion,
    HybridQuery,
    MemoryBackend,
    SearchHit,
    ingest,
    open_backend,
)
from sparsebridge.query import fuse

MINILM_SIZE = 384
RRF = Fusion(k=60)


def _backend_names() -> list[str]:
    names = ["memory", "qdrant+local", "opensearch", "elasticsearch", "postgres"]
    try:  # Qdrant Edge, where sparsebridge has it
        open_backend("qdrant+edge:///tmp/probe/docs")
        names.append("qdrant+edge")
    except (ValueError, ImportError):
        pass
    return names


BACKENDS = _backend_names()
CLUSTERS = ("opensearch", "elasticsearch")  # 9-bit stored sparse values, and full-text search
# exact, and no full-text search either
EXACT_BACKENDS = [name for name in BACKENDS if name not in (*CLUSTERS, "postgres")]


def score_tolerance(name: str) -> float:
    """Relative score tolerance against the exact reference (the engines keep 9 significant bits)."""
    return 1e-2 if name in CLUSTERS else 1e-5


def assert_same_top_k(
    expected: Sequence[SearchHit], got: Sequence[tuple[str, float]], *, k: int, rel: float = 1e-5
) -> None:
    """``got`` is a top-``k`` of ``expected`` (a longer exact list): same scores, each id with its score.

    Ties may come in another order or, at the cut, with another member; nothing else may differ.
    """
    assert len(got) == min(k, len(expected)) > 0
    scores = {hit.id: hit.score for hit in expected}
    assert [s for _, s in got] == pytest.approx([h.score for h in expected[:k]], rel=rel)
    for doc_id, score in got:
        assert doc_id in scores, f"{doc_id} is not in the reference ranking"
        assert score == pytest.approx(scores[doc_id], rel=rel)


def reference(
    documents: list[Document], encoder: Encoder, dense: DenseEncoder | None = None
) -> MemoryBackend:
    """The exact in-memory reference holding ``documents``."""
    backend = MemoryBackend()
    ingest(documents, encoder=encoder, backend=backend, dense_encoder=dense)
    return backend


def exact_hybrid(
    memory: MemoryBackend, encoder: Encoder, dense: DenseEncoder, query: str, *, candidates: int, k: int
) -> list[SearchHit]:
    """The exact sparse + dense RRF (k = 60) top-``k`` with ``candidates`` per leg."""
    [sparse] = encoder.encode_queries([query])
    [embedding] = dense.encode_queries([query])
    [hits] = memory.search_hybrid_batch(
        [HybridQuery(sparse=sparse, dense=embedding, candidates=candidates)], RRF, k=k
    )
    return hits


def docs_example(name: str) -> str:
    """The Python example of ``docs/connectors/<name>.md`` (its first python block), as written."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "connectors" / f"{name}.md").read_text()
    start = page.index("```python\n") + len("```python\n")
    return page[start : page.index("```\n", start)]


def engine_hybrid(
    backend: Backend, encoder: Encoder, dense: DenseEncoder, query: str, *, candidates: int, k: int
) -> list[SearchHit]:
    """RRF (k = 60) of the engine's own sparse and dense legs: what the library's hybrid returns there.

    The engine's sparse scores keep 9 significant bits, which may swap near-ties against the exact
    reference and so move a fused score; the retriever must equal the library on the same legs.
    """
    [sparse] = encoder.encode_queries([query])
    [embedding] = dense.encode_queries([query])
    legs = [backend.search(sparse, k=candidates), *backend.search_dense_batch([embedding], k=candidates)]  # type: ignore[attr-defined]
    return fuse(legs, RRF, limit=k)
