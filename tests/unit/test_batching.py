from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from sparsebridge.encoder.batching import (
    plan_batches,
    plan_exact_batches,
    prefetch,
    tokenized_batches,
    tokenizer_pool,
)


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


def fake_tokenize(texts: list[str]) -> dict[str, np.ndarray]:
    """Stands in for a fast tokenizer with return_tensors="np": one id per word plus [CLS]/[SEP]."""
    width = max(len(t.split()) for t in texts) + 2
    ids = np.zeros((len(texts), width), dtype=np.int64)
    mask = np.zeros((len(texts), width), dtype=np.int64)
    for row, text in enumerate(texts):
        tokens = [101, *(len(w) for w in text.split()), 102]
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("window", [1, 2])
def test_tokenized_batches_cover_every_text_once_trimmed_and_padded(window: int) -> None:
    texts = ["a bb ccc", "dddd", "e " * 9, "ff gg", "h", "i j", "k l", "m n"]
    batches = list(
        tokenized_batches(
            fake_tokenize, texts, pad_id=0, token_budget=64, max_batch_size=4, chunk_size=2, window=window
        )
    )
    positions = np.concatenate([b.positions for b in batches])
    assert sorted(positions.tolist()) == list(range(len(texts)))
    for batch in batches:
        mask = np.ones(batch.input_ids.shape, bool) if batch.mask is None else batch.mask
        assert batch.input_ids.shape == mask.shape
        assert mask[:, 0].all() and mask[:, -1].any(), "trimmed to the longest row"
        assert (batch.input_ids[~mask] == 0).all()
        for row, position in enumerate(batch.positions.tolist()):
            expected = fake_tokenize([texts[position]])["input_ids"][0]
            assert batch.input_ids[row, : mask[row].sum()].tolist() == expected.tolist()
    unpadded = [b.positions.tolist() for b in batches if b.mask is None]
    # A length needs 64 // 8 = 8 tokens in a window to go unpadded: text 2 alone has 11; texts 3, 5,
    # 6 and 7 have 4 each. Windows of one chunk (two texts) pair only 6 and 7; windows of 1, 2, 2
    # chunks also pair 3 and 5.
    assert unpadded == ([[2], [6, 7]] if window == 1 else [[2], [3, 5], [6, 7]])


def test_exact_batches_share_one_length_and_the_rest_is_returned() -> None:
    rng = np.random.default_rng(1)
    lengths = np.concatenate([np.full(50, 7), np.full(3, 9), rng.integers(1, 30, size=40)])
    exact, rest = plan_exact_batches(lengths, token_budget=64, max_batch_size=16, min_tokens=40)
    flat = np.concatenate([*exact, rest])
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    for batch in exact:
        assert len(set(lengths[batch].tolist())) == 1
        assert len(batch) <= 16 and lengths[batch[0]] * len(batch) <= 64
        assert lengths[batch[0]] * np.sum(lengths == lengths[batch[0]]) >= 40
    assert 9 not in lengths[np.concatenate(exact)], "27 tokens of length 9: below min_tokens"
    assert sorted(len(b) for b in exact if lengths[b[0]] == 7)[-1] <= 9, "64 // 7 = 9 per batch"


def test_prefetch_keeps_order_and_reraises() -> None:
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))

    def failing() -> Iterator[int]:
        yield 1
        raise RuntimeError("tokenizer broke")

    items = prefetch(failing(), depth=2)
    assert next(items) == 1
    with pytest.raises(RuntimeError, match="tokenizer broke"):
        next(items)


def test_prefetch_stops_its_thread_when_closed() -> None:
    produced: list[int] = []

    def endless() -> Iterator[int]:
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    items = prefetch(endless(), depth=2)
    assert next(items) == 0
    items.close()
    time.sleep(0.3)
    count = len(produced)
    time.sleep(0.3)
    assert len(produced) == count <= 5


def test_tokenizing_in_worker_processes_gives_the_same_batches() -> None:
    import functools

    from transformers import AutoTokenizer

    from sparsebridge.encoder.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("splade-tiny"))
    tokenize = functools.partial(
        tokenizer,
        truncation=True,
        max_length=16,
        padding=True,
        return_tensors="np",
        return_token_type_ids=False,
    )
    texts = [f"text number {i} " + "word " * (i % 23) for i in range(300)]
    options = {"pad_id": 0, "token_budget": 64, "max_batch_size": 8, "chunk_size": 37, "window": 4}
    local = list(tokenized_batches(tokenize, texts, **options))  # type: ignore[arg-type]
    with tokenizer_pool(tokenize, 2) as pool:
        pooled = list(tokenized_batches(tokenize, texts, pool=pool, workers=2, **options))  # type: ignore[arg-type]
    assert len(local) == len(pooled)
    for a, b in zip(local, pooled, strict=True):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.input_ids, b.input_ids)
        assert (a.mask is None) == (b.mask is None)
        np.testing.assert_array_equal(a.mask, b.mask)
