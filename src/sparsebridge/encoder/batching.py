"""Host-side batching: length-sorted token-budget batches, tokenised ahead of the device."""

from __future__ import annotations

import functools
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["HostBatch", "plan_batches", "prefetch", "tokenized_batches"]

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


@dataclass(frozen=True)
class HostBatch:
    """One batch ready for the device: right-padded ``input_ids`` and ``mask`` ``[B, L]``.

    ``positions`` are the texts' indices in the caller's input.
    """

    positions: npt.NDArray[np.int64]
    input_ids: npt.NDArray[np.int64]
    mask: npt.NDArray[np.bool_]


def tokenized_batches(
    tokenize: Callable[[list[str]], Any],
    texts: Sequence[str],
    *,
    pad_id: int,
    token_budget: int,
    max_batch_size: int,
    chunk_size: int = 4096,
    pool: ProcessPoolExecutor | None = None,
    workers: int = 0,
) -> Iterator[HostBatch]:
    """Tokenise ``chunk_size`` texts at a time (one padded array each), then cut token-budget batches.

    ``tokenize(list_of_texts)`` must return a mapping with ``input_ids`` and ``attention_mask`` as
    numpy arrays ``[N, L]`` (a Hugging Face fast tokenizer with ``return_tensors="np"``). With a
    ``pool``, up to ``workers`` chunks are tokenised at once in its processes (``tokenize`` must then
    be picklable), in order. Everything after tokenisation is vectorised: no per-token or
    per-document Python.
    """
    starts = range(0, len(texts), chunk_size)
    chunks = (list(texts[start : start + chunk_size]) for start in starts)
    if pool is None:
        encoded: Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = map(
            functools.partial(_encode_chunk, tokenize), chunks
        )
    else:
        encoded = _ordered_map(
            pool, functools.partial(_encode_chunk, tokenize), chunks, ahead=max(workers, 1)
        )
    for chunk_start, (ids, lengths) in zip(starts, encoded, strict=True):
        for positions in plan_batches(lengths, token_budget=token_budget, max_batch_size=max_batch_size):
            width = int(lengths[positions].max())
            mask = np.arange(width)[None, :] < lengths[positions][:, None]
            input_ids = np.where(mask, ids[positions, :width], pad_id)
            yield HostBatch(positions + chunk_start, input_ids, mask)


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
