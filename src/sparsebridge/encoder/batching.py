"""Host-side batching: length-sorted token-budget batches, tokenised ahead of the device."""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = [
    "HostBatch",
    "plan_batches",
    "plan_exact_batches",
    "prefetch",
    "tokenized_batches",
    "tokenizer_pool",
]

T = TypeVar("T")


def plan_batches(
    lengths: Sequence[int] | npt.NDArray[np.integer],
    *,
    token_budget: int,
    max_batch_size: int,
) -> list[npt.NDArray[np.int64]]:
    """Group positions into batches, longest first, so that ``count * longest <= token_budget``.

    A batch always holds at least one item, so an item longer than the budget gets a batch of its own.
    Returns arrays of positions into ``lengths``; their concatenation is a permutation of all positions.

    Example:
        >>> [b.tolist() for b in plan_batches([3, 10, 4, 9], token_budget=20, max_batch_size=8)]
        [[1, 3], [2, 0]]
    """
    if token_budget <= 0 or max_batch_size <= 0:
        raise ValueError("token_budget and max_batch_size must be positive")
    lengths_array = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths_array, kind="stable")
    batches: list[npt.NDArray[np.int64]] = []
    start = 0
    while start < order.size:
        longest = max(int(lengths_array[order[start]]), 1)
        size = max(1, min(max_batch_size, token_budget // longest, order.size - start))
        batches.append(order[start : start + size])
        start += size
    return batches


def plan_exact_batches(
    lengths: npt.NDArray[np.integer],
    *,
    token_budget: int,
    max_batch_size: int,
    min_tokens: int,
) -> tuple[list[npt.NDArray[np.int64]], npt.NDArray[np.int64]]:
    """Batches of items that all have the same length, for lengths with ``>= min_tokens`` tokens in all.

    Such batches need no padding and no attention mask. Each length's items are split into equal
    batches within ``token_budget`` and ``max_batch_size``; the items of rarer lengths are returned
    as the second value, for :func:`plan_batches`.

    Example:
        >>> exact, rest = plan_exact_batches(np.array([4, 2, 4, 3, 4]), token_budget=8,
        ...                                  max_batch_size=8, min_tokens=8)
        >>> [b.tolist() for b in exact], rest.tolist()
        ([[0, 2], [4]], [3, 1])
    """
    if token_budget <= 0 or max_batch_size <= 0:
        raise ValueError("token_budget and max_batch_size must be positive")
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    sorted_lengths = np.asarray(lengths, dtype=np.int64)[order]
    exact: list[npt.NDArray[np.int64]] = []
    rest: list[npt.NDArray[np.int64]] = []
    for group in np.split(order, np.flatnonzero(np.diff(sorted_lengths)) + 1):
        if not group.size:
            continue
        length = max(int(lengths[group[0]]), 1)
        if length * group.size < min_tokens:
            rest.append(group)
            continue
        per_batch = max(1, min(max_batch_size, token_budget // length))
        exact.extend(np.array_split(group, -(-group.size // per_batch)))
    return exact, np.concatenate(rest) if rest else np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class HostBatch:
    """One batch ready for the device: right-padded ``input_ids`` and ``mask`` ``[B, L]``.

    ``mask`` is None when every row is ``L`` tokens long (no padding: the model needs no mask).
    ``positions`` are the texts' indices in the caller's input.
    """

    positions: npt.NDArray[np.int64]
    input_ids: npt.NDArray[np.int64]
    mask: npt.NDArray[np.bool_] | None


def tokenized_batches(
    tokenize: Callable[[list[str]], Any],
    texts: Sequence[str],
    *,
    pad_id: int,
    token_budget: int,
    max_batch_size: int,
    chunk_size: int = 4096,
    window: int = 1,
    pool: ProcessPoolExecutor | None = None,
    workers: int = 0,
) -> Iterator[HostBatch]:
    """Tokenise ``chunk_size`` texts at a time, then cut token-budget batches from ``window`` chunks.

    ``tokenize(list_of_texts)`` must return a mapping with ``input_ids`` and ``attention_mask`` as
    numpy arrays ``[N, L]`` (a Hugging Face fast tokenizer with ``return_tensors="np"``). With a
    ``pool`` from :func:`tokenizer_pool` (made with the same ``tokenize``), up to ``workers`` chunks
    are tokenised at once in its processes, in order. Windows start at one chunk and double up to
    ``window`` chunks, so the first batches come quickly. Lengths shared by enough texts of a window
    (an eighth of the token budget) get unpadded batches without a mask (:func:`plan_exact_batches`);
    the other texts get length-sorted padded batches. Everything after tokenisation is vectorised:
    no per-token or per-document Python.
    """
    if window <= 0:
        raise ValueError("window must be positive")
    starts = range(0, len(texts), chunk_size)
    chunks = (list(texts[start : start + chunk_size]) for start in starts)
    if pool is None:
        encoded: Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = map(
            functools.partial(_encode_chunk, tokenize), chunks
        )
    else:
        encoded = _ordered_map(pool, _encode_in_worker, chunks, ahead=max(workers, 1))
    window_start = 0
    size = 1
    while True:
        parts = list(itertools.islice(encoded, size))
        if not parts:
            return
        size = min(2 * size, window)
        ids, lengths = _concatenated(parts, pad_id)
        exact, rest = plan_exact_batches(
            lengths, token_budget=token_budget, max_batch_size=max_batch_size, min_tokens=token_budget // 8
        )
        for positions in exact:
            yield HostBatch(positions + window_start, ids[positions, : lengths[positions[0]]], None)
        for part in plan_batches(lengths[rest], token_budget=token_budget, max_batch_size=max_batch_size):
            positions = rest[part]
            width = int(lengths[positions].max())
            mask = np.arange(width)[None, :] < lengths[positions][:, None]
            input_ids = np.where(mask, ids[positions, :width], pad_id)
            yield HostBatch(positions + window_start, input_ids, mask)
        window_start += len(lengths)


def _concatenated(
    parts: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]], pad_id: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """One ``[N, L]`` id array (padded to the widest part) and the lengths of several chunks."""
    if len(parts) == 1:
        return parts[0]
    width = max(ids.shape[1] for ids, _ in parts)
    ids = np.concatenate(
        [np.pad(ids, ((0, 0), (0, width - ids.shape[1])), constant_values=pad_id) for ids, _ in parts]
    )
    return ids, np.concatenate([lengths for _, lengths in parts])


def tokenizer_pool(tokenize: Callable[[list[str]], Any], workers: int) -> ProcessPoolExecutor:
    """``workers`` spawned processes that receive ``tokenize`` once, for :func:`tokenized_batches`.

    Spawned, not forked: the caller may hold CUDA state. Each task then carries only its texts.
    """
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(tokenize,))
    # Spawned pools start processes on demand; start them all now (seconds each), not mid-encoding.
    for started in [pool.submit(os.getpid) for _ in range(workers)]:
        started.result()
    return pool


_worker_tokenize: Callable[[list[str]], Any] | None = None


def _start_worker(tokenize: Callable[[list[str]], Any]) -> None:
    global _worker_tokenize
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the processes are the parallelism
    _worker_tokenize = tokenize


def _encode_in_worker(texts: list[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    if _worker_tokenize is None:
        raise RuntimeError("not a tokenizer_pool worker")
    return _encode_chunk(_worker_tokenize, texts)


def _encode_chunk(
    tokenize: Callable[[list[str]], Any], texts: list[str]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    encoded = tokenize(texts)
    ids = np.asarray(encoded["input_ids"], dtype=np.int64)
    return ids, np.asarray(encoded["attention_mask"], dtype=np.int64).sum(axis=1)


def _ordered_map(
    pool: ProcessPoolExecutor, fn: Callable[[Any], T], items: Iterator[Any], *, ahead: int
) -> Iterator[T]:
    """``map(fn, items)`` in ``pool``, results in order, at most ``ahead`` items in flight."""
    pending: deque[Future[T]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


_DONE = object()


def prefetch(items: Iterator[T], *, depth: int) -> Iterator[T]:
    """Run ``items`` in a background thread, at most ``depth`` ahead; errors re-raise here.

    Stopping early (closing the generator) stops the thread at its next item.
    """
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_DONE)
        except BaseException as error:  # handed to the consumer
            buffer.put(error)

    thread = threading.Thread(target=produce, name="sparsebridge-tokenize", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
