"""Concurrent calls share forward passes and each caller still gets the vectors of a lone call.

Real splade-tiny on the CPU. The first pass is held at a gate (a hook on the model's input
embeddings) until every other caller is queued, so the gathering is deterministic, not timing luck.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch

from sparsebridge.encoder import Encoder
from sparsebridge.encoder.coalesce import PassInfo
from sparsebridge.types import SparseVector

WAIT = 60.0
TOLERANCE = 1e-5  # the parity tolerance: same non-zero dimensions, weights within this


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "the state was never reached"
        time.sleep(0.002)


def assert_close(got: list[SparseVector], want: list[SparseVector]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_allclose(a.values, b.values, rtol=0, atol=TOLERANCE)


class Gate:
    """A forward pre-hook on the input embeddings: holds passes while closed, fails on a poison token."""

    def __init__(self, poison: int | None = None) -> None:
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()
        self.poison = poison

    def __call__(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        self.entered.set()
        assert self.open.wait(WAIT)
        if self.poison is not None and bool((args[0] == self.poison).any()):
            raise RuntimeError("the model failed on this input")


@contextmanager
def gated(encoder: Encoder, gate: Gate) -> Iterator[Gate]:
    embeddings = encoder.model[0].auto_model.get_input_embeddings()
    handle = embeddings.register_forward_pre_hook(gate)
    try:
        yield gate
    finally:
        handle.remove()


def run_gathered(
    encoder: Encoder, gate: Gate, first: Callable[[], object], others: list[Callable[[], object]]
) -> None:
    """Run ``first`` and hold its pass until every one of ``others`` (each in a thread) is queued."""
    assert encoder.coalescer is not None
    gate.open.clear()
    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert gate.entered.wait(WAIT)  # the first pass is running, held
    for call in others:
        threads.append(threading.Thread(target=call))
        threads[-1].start()
    wait_until(lambda: encoder.coalescer is not None and encoder.coalescer.queued == len(others))
    gate.open.set()
    for thread in threads:
        thread.join(WAIT)


def calls_of_mixed_lengths(corpus: list[tuple[str, str]], queries: list[str]) -> list[list[str]]:
    """One to three texts per call, from one-word queries to 40-word documents."""
    texts = [*queries, *(text for _, text in corpus[:24])]
    return [texts[n : n + 1 + n % 3] for n in range(0, len(texts), 2)]


@pytest.mark.parametrize("fast_path", [True, False])
def test_many_threads_share_passes_and_get_the_vectors_of_lone_calls(
    encoder: Encoder, corpus: list[tuple[str, str]], queries: list[str], fast_path: bool
) -> None:
    shared = Encoder(encoder.model, fast_path=fast_path, coalesce_max_batch=64)
    assert shared.coalescer is not None and shared.uses_fast_path == fast_path
    calls = calls_of_mixed_lengths(corpus, queries)
    lone = [shared.encode_queries(texts) for texts in calls]
    lone_top = [shared.encode_queries(texts, top_k=8) for texts in calls]
    infos: list[PassInfo] = []
    shared.coalescer.add_listener(infos.append)
    results: dict[tuple[int, bool], list[SparseVector]] = {}
    errors: list[BaseException] = []

    def caller(n: int, pruned: bool) -> None:
        try:
            top_k = 8 if pruned else None
            results[n, pruned] = shared.encode_queries(calls[n], top_k=top_k)
        except BaseException as error:  # reported in the test's thread
            errors.append(error)

    jobs = [(n, pruned) for n in range(1, len(calls)) for pruned in (False, True)]
    with gated(shared, Gate()) as gate:
        others = [functools.partial(caller, *job) for job in jobs]
        run_gathered(shared, gate, functools.partial(caller, 0, False), others)
    assert not errors, f"{len(errors)} callers failed, first: {errors[0]!r}"
    for (n, pruned), got in results.items():
        assert_close(got, (lone_top if pruned else lone)[n])
    assert len(results) == 1 + len(jobs)
    # every queued call was answered by a gathered pass: far fewer passes than calls
    assert infos[0].calls == 1
    assert sum(info.calls for info in infos) == 1 + len(jobs)
    assert max(info.calls for info in infos) > 1
    assert len(infos) < len(jobs) // 4
    assert all(info.items <= 64 for info in infos[1:])


def test_asyncio_callers_share_passes_with_threads(encoder: Encoder, queries: list[str]) -> None:
    shared = Encoder(encoder.model)
    assert shared.coalescer is not None
    lone = {q: shared.encode_queries([q]) for q in queries}
    infos: list[PassInfo] = []
    shared.coalescer.add_listener(infos.append)

    async def ask_all() -> list[list[SparseVector]]:
        return await asyncio.gather(*(shared.aencode_queries([q]) for q in queries))

    with gated(shared, Gate()) as gate:
        gate.open.clear()
        in_thread: list[list[SparseVector]] = []
        first = threading.Thread(target=lambda: in_thread.append(shared.encode_queries([queries[0]])))
        first.start()
        assert gate.entered.wait(WAIT)
        got: list[list[list[SparseVector]]] = []
        loop = threading.Thread(target=lambda: got.append(asyncio.run(ask_all())))
        loop.start()
        wait_until(lambda: shared.coalescer is not None and shared.coalescer.queued == len(queries))
        gate.open.set()
        first.join(WAIT)
        loop.join(WAIT)
    assert_close(in_thread[0], lone[queries[0]])
    for query, vectors in zip(queries, got[0], strict=True):
        assert_close(vectors, lone[query])
    assert [info.calls for info in infos] == [1, len(queries)]


def test_an_input_that_fails_the_pass_fails_only_its_own_caller(encoder: Encoder, queries: list[str]) -> None:
    shared = Encoder(encoder.model)
    assert shared.coalescer is not None
    poison_text = "zebra"
    [poison] = encoder.model.tokenizer(poison_text, add_special_tokens=False)["input_ids"]
    assert not any(poison_text in q for q in queries)
    lone = {q: shared.encode_queries([q]) for q in queries}
    callers = [*queries[:4], f"{queries[4]} {poison_text}", *queries[5:]]
    results: dict[int, list[SparseVector]] = {}
    failures: dict[int, BaseException] = {}

    def caller(n: int) -> None:
        try:
            results[n] = shared.encode_queries([callers[n]])
        except Exception as error:
            failures[n] = error

    with gated(shared, Gate(poison)) as gate:
        others = [functools.partial(caller, n) for n in range(len(callers))]
        run_gathered(shared, gate, lambda: shared.encode_queries(["held"]), others)
        assert list(failures) == [4]
        assert "failed on this input" in str(failures[4])
        for n, got in results.items():
            assert_close(got, lone[callers[n]])
        # the encoder still answers after the failure, also the poison on its own
        with pytest.raises(RuntimeError, match="failed on this input"):
            shared.encode_queries([poison_text])
    assert_close(shared.encode_queries([queries[0]]), lone[queries[0]])


def test_large_calls_and_coalesce_false_run_directly(encoder: Encoder, queries: list[str]) -> None:
    shared = Encoder(encoder.model, coalesce_max_batch=4)
    assert shared.coalescer is not None
    infos: list[PassInfo] = []
    shared.coalescer.add_listener(infos.append)
    shared.encode_queries(queries[:4])  # as many texts as max_batch: not gathered
    assert infos == []
    shared.encode_queries(queries[:3])
    assert [info.items for info in infos] == [3]
    assert Encoder(encoder.model, coalesce=False).coalescer is None
    with pytest.raises(ValueError, match="max_batch"):
        Encoder(encoder.model, coalesce_max_batch=0)
