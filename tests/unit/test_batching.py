from __future__ import annotations

import numpy as np
import pytest

from sparsebridge.encoder.batching import TokenizedCorpus, plan_batches


def test_batches_are_length_sorted_within_budget_and_cover_everything() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 300, size=1000)
    batches = plan_batches(lengths, token_budget=4096, max_batch_size=64)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    assert np.all(np.diff(lengths[flat]) <= 0), "longest first"
    for batch in batches:
        assert len(batch) <= 64
        assert len(batch) == 1 or lengths[batch].max() * len(batch) <= 4096


def test_item_longer_than_budget_gets_its_own_batch() -> None:
    batches = plan_batches([5000, 3, 3], token_budget=100, max_batch_size=8)
    assert [b.tolist() for b in batches] == [[0], [1, 2]]


def test_empty_and_invalid() -> None:
    assert plan_batches([], token_budget=10, max_batch_size=2) == []
    with pytest.raises(ValueError):
        plan_batches([1], token_budget=0, max_batch_size=2)


def test_padding_is_vectorised_and_exact() -> None:
    corpus = TokenizedCorpus.from_lists([[101, 7, 102], [101, 102], [101, 5, 6, 7, 102]])
    ids, mask = corpus.padded(np.array([2, 0, 1]), pad_id=0)
    assert ids.tolist() == [[101, 5, 6, 7, 102], [101, 7, 102, 0, 0], [101, 102, 0, 0, 0]]
    assert mask.sum(axis=1).tolist() == [5, 3, 2]
