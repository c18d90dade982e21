"""Checks shared by the live-engine tests (OpenSearch with k-NN, Elasticsearch) on the minibeir data."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from sparsebridge.backends import MemoryBackend
from sparsebridge.types import SearchHit, SparseVector

QUANTIZATION = 2**-8  # one stored rank_features / sparse_vector value's worst relative error (9 bits)
COSINE_TOLERANCE = 1e-5  # float32 vectors, and the engine's (1 + cos) / 2 mapped back to cos
# The same knn query can score a document a few float32 ulps apart from one call to the next (seen
# on OpenSearch 3.5.0 under Java 25; most likely the vectorized dot product summing in another order
# once the JIT has compiled it), so a fused score is compared within this bound; a wrong fusion is
# off by far more.
FUSED_TOLERANCE = 1e-4


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def recall(got: list[SearchHit], want: list[SearchHit]) -> float:
    return len({h.id for h in got} & {h.id for h in want}) / len(want)


def assert_same_fused_hits(got: list[SearchHit], want: list[SearchHit]) -> None:
    """The same hits with the same scores, within ``FUSED_TOLERANCE``: hits may trade places only
    where their scores are that close, and a hit missing from ``want`` only at its cut."""
    assert len(got) == len(want)
    assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=FUSED_TOLERANCE)
    wanted = {h.id: h.score for h in want}
    for hit in got:
        reference = wanted.get(hit.id, want[-1].score)
        assert hit.score == pytest.approx(reference, abs=FUSED_TOLERANCE), hit.id


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``sparsebridge ARGS`` in a child process (offline), with its output."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "sparsebridge.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False, cwd=cwd)


def sparse_swaps_within_quantization(
    got_all: Sequence[list[SearchHit]], exact: MemoryBackend, queries: Sequence[SparseVector], *, k: int
) -> int:
    """Check a backend's sparse top-``k`` per query against the exact one; return the near-tie swaps.

    Every score is within :data:`QUANTIZATION` of the exact score at its rank and of the hit's own
    exact score; only near-ties may leave the top ``k`` or swap places inside it.
    """
    swaps = 0
    for query, got in zip(queries, got_all, strict=True):
        [want] = exact.search_batch([query], k=k)
        true = {h.id: h.score for h in exact.search(query, k=10_000)}
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):  # the i-th best score, backend vs exact
            assert g.score == pytest.approx(w.score, rel=QUANTIZATION)
            assert g.score == pytest.approx(true[g.id], rel=QUANTIZATION)
        cutoff = want[-1].score * (1 - 2 * QUANTIZATION)
        for document_id in {h.id for h in got} ^ {h.id for h in want}:
            assert true[document_id] >= cutoff, document_id
        for a, b in itertools.pairwise(got):
            if true[a.id] < true[b.id]:
                swaps += 1
                assert true[a.id] >= true[b.id] * (1 - 2 * QUANTIZATION), (a.id, b.id)
    return swaps
