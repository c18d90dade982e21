"""Metrics against hand-computed values, and BEIR loading."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sparsebridge.errors import InputError
from sparsebridge.eval.beir import load_beir
from sparsebridge.eval.metrics import average_precision_at_k, evaluate, mrr_at_k, ndcg_at_k, recall_at_k

RANKING = ["d1", "d2", "d3", "d4"]
QRELS = {"d2": 2, "d4": 1, "d9": 1, "d5": 0}  # d9 relevant but not retrieved; d5 judged irrelevant


def test_graded_ndcg() -> None:
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    ideal = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(RANKING, QRELS, 10) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(RANKING, QRELS, 10) == pytest.approx(0.5405858, abs=1e-7)  # 1.6925367 / 3.1309298
    assert ndcg_at_k(RANKING, QRELS, 2) == pytest.approx((2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert ndcg_at_k(["d2", "d4", "d9"], QRELS, 10) == pytest.approx(1.0)
    assert ndcg_at_k(RANKING, {"d5": 0}, 10) == 0.0


def test_mrr_recall_map() -> None:
    assert mrr_at_k(RANKING, QRELS, 10) == 0.5
    assert mrr_at_k(RANKING, QRELS, 1) == 0.0
    assert recall_at_k(RANKING, QRELS, 100) == pytest.approx(2 / 3)
    assert recall_at_k(RANKING, QRELS, 2) == pytest.approx(1 / 3)
    assert average_precision_at_k(RANKING, QRELS, 100) == pytest.approx((1 / 2 + 2 / 4) / 3)


def test_evaluate_averages_over_judged_queries_and_counts_missing_runs_as_zero() -> None:
    qrels = {"q1": QRELS, "q2": {"x": 1}, "q3": {"y": 0}}  # q3 has no relevant document: not counted
    result = evaluate({"q1": RANKING}, qrels)
    assert result["mrr@10"] == pytest.approx(0.25)
    assert result["map@100"] == pytest.approx(1 / 6)
    assert set(result) == {"ndcg@10", "mrr@10", "recall@100", "map@100"}
    with pytest.raises(ValueError, match="twice"):
        ndcg_at_k(["a", "a"], QRELS, 10)


def write_beir(root: Path, qrels: str) -> Path:
    (root / "qrels").mkdir(parents=True)
    corpus = [{"_id": "d1", "title": "Mars", "text": "is red"}, {"_id": 2, "title": "", "text": "Bread"}]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in corpus) + "\n")
    queries = [{"_id": "q1", "text": "red planet"}, {"_id": "q2", "text": "unjudged"}]
    (root / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in queries) + "\n")
    (root / "qrels" / "test.tsv").write_text(qrels)
    return root


@pytest.mark.parametrize("header", ["query-id\tcorpus-id\tscore\n", ""])
def test_beir_loading_with_or_without_header(tmp_path: Path, header: str) -> None:
    data = load_beir(write_beir(tmp_path, header + "q1\td1\t2\nq1\t2\t0\n"))
    assert data.corpus["d1"].text == "Mars is red" and data.corpus["2"].text == "Bread"
    assert data.queries == {"q1": "red planet"}  # queries without qrels are not evaluated
    assert data.qrels == {"q1": {"d1": 2, "2": 0}}


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        ("q1\td1\t2\nq1\td1\tx\n", r"test.tsv:2: score 'x'"),
        ("q1\tnope\t1\n", "unknown document 'nope'"),
        ("q1\td1\n", "3 tab-separated columns"),
    ],
)
def test_bad_qrels_are_refused_with_their_line(tmp_path: Path, qrels: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_beir(write_beir(tmp_path, qrels))


def test_shipped_dataset_loads() -> None:
    data = load_beir(Path(__file__).parents[1] / "data" / "minibeir")
    assert (len(data.corpus), len(data.queries)) == (140, 20)
    assert sum(len(q) for q in data.qrels.values()) == 80
