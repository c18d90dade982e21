"""One ``Encoder`` shared by many threads gives exactly the vectors of sequential calls (CPU, splade-tiny)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from sparsebridge.encoder import Encoder
from sparsebridge.types import SparseVector

THREADS = 16
ROUNDS = 3


def assert_identical(got: list[SparseVector], want: list[SparseVector]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.values, b.values)


@pytest.mark.parametrize("fast_path", [True, False])
def test_threads_sharing_one_encoder_get_the_sequential_vectors(
    encoder: Encoder, corpus: list[tuple[str, str]], queries: list[str], fast_path: bool
) -> None:
    # not gathered: concurrent calls run as they would one after another, bit for bit
    shared = Encoder(encoder.model, fast_path=fast_path, token_budget=512, coalesce=False)
    assert shared.uses_fast_path == fast_path
    texts = [text for _, text in corpus]
    # Each thread gets its own slice of documents or queries: different batch shapes at once.
    jobs = []
    for n in range(THREADS):
        if n % 2:
            jobs.append(("query", [*queries, texts[n]]))
        else:
            jobs.append(("document", texts[n * 7 : n * 7 + 9 + n]))

    def run(kind: str, batch: list[str]) -> list[SparseVector]:
        return shared.encode_queries(batch) if kind == "query" else shared.encode_documents(batch)

    expected = [run(kind, batch) for kind, batch in jobs]
    results: list[list[list[SparseVector]]] = [[] for _ in jobs]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)
    projection = dict(encoder.model.named_modules())

    def worker(n: int) -> None:
        try:
            start.wait()
            for _ in range(ROUNDS):
                results[n].append(run(*jobs[n]))
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, f"{len(errors)} threads failed, first: {errors[0]!r}"
    for n, rounds in enumerate(results):
        assert len(rounds) == ROUNDS
        for got in rounds:
            assert_identical(got, expected[n])
    # the user's model is the same object tree after the calls as before
    assert dict(encoder.model.named_modules()) == projection
