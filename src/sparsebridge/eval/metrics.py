"""Retrieval metrics, with trec_eval's conventions (what BEIR reports through pytrec_eval).

A *run* maps a query id to its ranked document ids (best first); *qrels* map a query id to
``{document id: grade}``. A document is relevant when its grade is > 0.

- ``ndcg@k``: ``DCG = sum_{i=1..k} gain_i / log2(i + 1)`` with ``gain = grade`` (linear gain,
  grades <= 0 count 0), divided by the DCG of the qrels' grades sorted descending (cut at ``k``).
- ``mrr@k``: ``1 / rank`` of the first relevant document within the top ``k``, else 0.
- ``recall@k``: relevant documents in the top ``k`` / all relevant documents.
- ``map@k``: ``sum of precision@i over the ranks i <= k holding a relevant document`` / all
  relevant documents (not ``min(R, k)``: trec_eval's ``map_cut``).

Averages are over the queries that have at least one relevant document; such a query missing from
the run counts 0.

Example:
    >>> ndcg_at_k(["a", "b"], {"b": 1}, 10)  # 1/log2(3) / 1
    0.6309297535714575
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

__all__ = ["METRICS", "average_precision_at_k", "evaluate", "mrr_at_k", "ndcg_at_k", "recall_at_k"]


def _check(ranking: Sequence[str], k: int) -> None:
    if isinstance(ranking, str):
        raise TypeError("ranking must be a sequence of document ids, not a string")
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if len(set(ranking)) != len(ranking):
        raise ValueError("a ranking lists a document twice")


def ndcg_at_k(ranking: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """Graded nDCG@k (gain = grade, log2 discount, ideal ranking from the qrels)."""
    _check(ranking, k)
    dcg = sum(max(qrels.get(d, 0), 0) / math.log2(i + 1) for i, d in enumerate(ranking[:k], start=1))
    ideal = sorted((g for g in qrels.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 1) for i, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def mrr_at_k(ranking: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant document in the top ``k`` (0 if none)."""
    _check(ranking, k)
    for rank, document_id in enumerate(ranking[:k], start=1):
        if qrels.get(document_id, 0) > 0:
            return 1.0 / rank
    return 0.0


def recall_at_k(ranking: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found in the top ``k``."""
    _check(ranking, k)
    relevant = sum(1 for g in qrels.values() if g > 0)
    if relevant == 0:
        return 0.0
    return sum(1 for d in ranking[:k] if qrels.get(d, 0) > 0) / relevant


def average_precision_at_k(ranking: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """Average precision cut at ``k``, divided by the number of relevant documents."""
    _check(ranking, k)
    relevant = sum(1 for g in qrels.values() if g > 0)
    if relevant == 0:
        return 0.0
    found, total = 0, 0.0
    for rank, document_id in enumerate(ranking[:k], start=1):
        if qrels.get(document_id, 0) > 0:
            found += 1
            total += found / rank
    return total / relevant


# name -> (metric, cutoff); the names are the keys of ``sparsebridge eval``'s JSON
METRICS: dict[str, tuple[Callable[[Sequence[str], Mapping[str, int], int], float], int]] = {
    "ndcg@10": (ndcg_at_k, 10),
    "mrr@10": (mrr_at_k, 10),
    "recall@100": (recall_at_k, 100),
    "map@100": (average_precision_at_k, 100),
}


def evaluate(run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Mean nDCG@10, MRR@10, Recall@100 and MAP@100 of ``run`` over the judged queries.

    Raises:
        ValueError: No query has a relevant document.
    """
    judged = [q for q, grades in qrels.items() if any(g > 0 for g in grades.values())]
    if not judged:
        raise ValueError("no query has a relevant document in the qrels")
    return {
        name: sum(metric(list(run.get(q, ())), qrels[q], k) for q in judged) / len(judged)
        for name, (metric, k) in METRICS.items()
    }
