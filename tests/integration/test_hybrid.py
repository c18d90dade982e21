"""Hybrid search and evaluation on embedded Qdrant with the bundled models, against exact scoring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparsebridge.backends import QdrantBackend, QdrantTarget
from sparsebridge.encoder import Encoder
from sparsebridge.encoder.dense import DenseEncoder
from sparsebridge.eval import BeirDataset, load_beir, run_eval
from sparsebridge.query import Fusion, FusionMethod, HybridQuery
from sparsebridge.query.fusion import fuse
from sparsebridge.types import SearchHit

DATASET = Path(__file__).parents[1] / "data" / "minibeir"
CANDIDATES = 20


@pytest.fixture(scope="module")
def dense() -> DenseEncoder:
    return DenseEncoder.load("minilm", device="cpu")


@pytest.fixture(scope="module")
def dataset() -> BeirDataset:
    return load_beir(DATASET)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, encoder, dense, dataset):  # type: ignore[no-untyped-def]
    backend = QdrantBackend(
        QdrantTarget("beir", path=str(tmp_path_factory.mktemp("qdrant"))), dense_size=dense.dimension
    )
    report = run_eval(dataset, encoder=encoder, backend=backend, dense_encoder=dense)
    yield backend, report
    backend.close()


def test_qdrant_metrics_are_identical_to_exact(evaluated) -> None:  # type: ignore[no-untyped-def]
    _, report = evaluated
    assert set(report.modes) == {"sparse", "dense", "hybrid"}  # no BM25 on Qdrant
    for mode in ("sparse", "dense", "hybrid"):
        assert report.modes[mode] == report.exact[mode], mode
        assert all(v == 0 for v in report.differences()[mode].values())
    assert 0.5 < report.modes["sparse"]["ndcg@10"] <= 1.0 and 0.5 < report.modes["dense"]["ndcg@10"] <= 1.0
    assert 5 < report.active_dims["query"] < report.active_dims["document"]
    assert set(report.to_json()) == {"backend", "modes", "exact", "active_dims", "timings"}


@pytest.fixture(scope="module")
def hybrid_queries(encoder: Encoder, dense: DenseEncoder, dataset: BeirDataset) -> list[HybridQuery]:
    texts = list(dataset.queries.values())
    sparse = encoder.encode_queries(texts)
    embedded = dense.encode_queries(texts)
    return [
        HybridQuery(sparse=s, dense=d, candidates=CANDIDATES) for s, d in zip(sparse, embedded, strict=True)
    ]


def qdrant_legs(backend: QdrantBackend, queries: list[HybridQuery]) -> list[list[list[SearchHit]]]:
    """The same legs, fetched from Qdrant separately (sparse and dense searches)."""
    sparse = backend.search_batch([q.sparse for q in queries if q.sparse is not None], k=CANDIDATES)
    dense = backend.search_dense_batch([q.dense for q in queries if q.dense is not None], k=CANDIDATES)
    return [list(legs) for legs in zip(sparse, dense, strict=True)]


@pytest.mark.parametrize(
    "fusion",
    [Fusion(FusionMethod.RRF, k=k) for k in (60, 2, 0)] + [Fusion(FusionMethod.DBSF)],
    ids=["rrf-k60", "rrf-k2", "rrf-k0", "dbsf"],
)
def test_hybrid_equals_the_fusion_of_the_same_legs_exactly(evaluated, hybrid_queries, fusion):  # type: ignore[no-untyped-def]
    backend, _ = evaluated
    fused = backend.search_hybrid_batch(hybrid_queries, fusion, k=30)
    for got, legs in zip(fused, qdrant_legs(backend, hybrid_queries), strict=True):
        want = fuse(legs, fusion, limit=30)
        assert [(h.id, h.score) for h in got] == [(h.id, h.score) for h in want]


def test_weighted_and_normalised_fusions_equal_the_fusion_of_the_same_legs_exactly(evaluated, hybrid_queries):  # type: ignore[no-untyped-def]
    backend, _ = evaluated
    for fusion in (
        Fusion(FusionMethod.SUM, weights=(0.2, 1.0)),
        Fusion(FusionMethod.RRF, k=60, weights=(2.0, 1.0)),
        Fusion(FusionMethod.ZSCORE),
    ):
        got = backend.search_hybrid_batch(hybrid_queries, fusion, k=10)
        want = [fuse(legs, fusion, limit=10) for legs in qdrant_legs(backend, hybrid_queries)]
        assert [[(h.id, h.score) for h in q] for q in got] == [[(h.id, h.score) for h in q] for q in want]


def test_bm25_leg_is_refused_on_qdrant(evaluated, hybrid_queries) -> None:  # type: ignore[no-untyped-def]
    backend, _ = evaluated
    query = HybridQuery(sparse=hybrid_queries[0].sparse, text="why is mars red")
    with pytest.raises(ValueError, match="no BM25 leg"):
        backend.search_hybrid_batch([query], Fusion(), k=10)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "sparsebridge.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)


def test_eval_cli_then_hybrid_search_cli(tmp_path: Path) -> None:
    target = f"qdrant+local://{tmp_path}/q/beir"
    output = tmp_path / "results.json"
    done = run_cli(
        "eval", "--dataset", str(DATASET), "--model", "splade-tiny", "--dense-model", "minilm",
        "--to", target, "--output", str(output), "--device", "cpu", "--rrf-k", "60",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "diff" in done.stdout and "hybrid" in done.stdout
    result = json.loads(output.read_text())
    assert set(result) == {"backend", "modes", "exact", "active_dims", "timings"}
    assert result["backend"] == "qdrant" and set(result["active_dims"]) == {"query", "document"}
    assert set(result["modes"]["hybrid"]) == {"ndcg@10", "mrr@10", "recall@100", "map@100"}
    assert result["modes"] == result["exact"]
    done = run_cli(
        "search", "--model", "splade-tiny", "--dense-model", "minilm", "--to", target, "--device", "cpu",
        "--hybrid", "--fusion", "dbsf", "-k", "3", "why is mars red",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split()[2].startswith("mars-2")  # an answer ranks first
    done = run_cli(
        "search", "--model", "splade-tiny", "--to", target, "--device", "cpu", "--hybrid", "mars",
    )  # fmt: skip
    assert done.returncode == 2 and "needs a second leg" in done.stderr
