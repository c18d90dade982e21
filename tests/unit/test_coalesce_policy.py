"""The coalescer's policy on a fake run: who runs when, what a pass holds, how failures stay local."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import pytest

from sparsebridge.encoder.coalesce import Coalescer, PassInfo

WAIT = 30.0  # seconds a test waits for a state before it fails (never reached when the code is right)


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "the state was never reached"
        time.sleep(0.001)


class Recorder:
    """A run that doubles each item, records each pass, and can be held at the gate."""

    def __init__(self) -> None:
        self.passes: list[tuple[str, list[int]]] = []
        self.threads: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, key: str, items: list[int]) -> list[int]:
        self.entered.set()
        assert self.gate.wait(WAIT)
        self.passes.append((key, list(items)))
        self.threads.append(threading.current_thread().name)
        if -1 in items:
            raise ValueError("poison")
        return [2 * item for item in items]


def held_pass(coalescer: Coalescer[str, int, int], run: Recorder, key: str = "q") -> Future[list[int]]:
    """Start a pass of one call and hold it at the gate: what is submitted now waits in the queue."""
    run.gate.clear()
    run.entered.clear()
    first = coalescer.submit(key, [0])
    assert run.entered.wait(WAIT)
    return first


def test_a_lone_call_runs_at_once_in_the_callers_thread() -> None:
    run = Recorder()
    coalescer = Coalescer(run, max_batch=8, max_wait=3600.0)  # a wait would hang: never taken when idle
    assert coalescer.call("q", [1, 2]) == [2, 4]
    assert coalescer.call("q", [3]) == [6]
    assert run.threads == [threading.current_thread().name] * 2
    assert run.passes == [("q", [1, 2]), ("q", [3])]


def test_calls_that_arrive_during_a_pass_form_the_next_one() -> None:
    run = Recorder()
    coalescer = Coalescer(run, max_batch=64, max_wait=0.0)
    infos: list[PassInfo] = []
    coalescer.add_listener(infos.append)
    first = held_pass(coalescer, run)
    futures = [coalescer.submit("q", [n, n + 100]) for n in range(1, 11)]
    assert coalescer.queued == 10
    run.gate.set()
    assert first.result(WAIT) == [0]
    assert [f.result(WAIT) for f in futures] == [[2 * n, 2 * n + 200] for n in range(1, 11)]
    assert [len(items) for _, items in run.passes] == [1, 20]
    assert [(i.calls, i.items, i.runs, i.failed_calls) for i in infos] == [(1, 1, 1, 0), (10, 20, 1, 0)]


def test_threads_blocked_in_call_share_a_pass() -> None:
    run = Recorder()
    coalescer = Coalescer(run, max_batch=64, max_wait=0.0)
    first = held_pass(coalescer, run)
    results: dict[int, list[int]] = {}

    def caller(n: int) -> None:
        results[n] = coalescer.call("q", [n])

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    wait_until(lambda: coalescer.queued == 8)
    run.gate.set()
    for thread in threads:
        thread.join(WAIT)
    first.result(WAIT)
    assert results == {n: [2 * n] for n in range(8)}
    assert sorted(run.passes[1][1]) == list(range(8))
    assert len(run.passes) == 2


def test_a_pass_holds_at_most_max_batch_items_and_never_splits_a_call() -> None:
    run = Recorder()
    coalescer = Coalescer(run, max_batch=4, max_wait=0.0)
    first = held_pass(coalescer, run)
    sizes = [1, 3, 2, 2, 5, 1]
    futures = [coalescer.submit("q", list(range(size))) for size in sizes]
    run.gate.set()
    first.result(WAIT)
    for future, size in zip(futures, sizes, strict=True):
        assert future.result(WAIT) == [2 * i for i in range(size)]
    # FIFO, whole calls, <= 4 items; the 5-item call runs alone
    assert [len(items) for _, items in run.passes[1:]] == [4, 4, 5, 1]


def test_calls_with_different_keys_never_share_a_pass() -> None:
    run = Recorder()
    coalescer = Coalescer(run, max_batch=64, max_wait=0.0)
    first = held_pass(coalescer, run)
    futures = [coalescer.submit(key, [n]) for n, key in enumerate("abab")]
    run.gate.set()
    first.result(WAIT)
    assert [f.result(WAIT) for f in futures] == [[0], [2], [4], [6]]
    assert run.passes[1:] == [("a", [0, 2]), ("b", [1, 3])]


def test_a_failing_input_fails_only_its_own_call() -> None:
    run = Recorder()
    coalescer = Coalescer(run, max_batch=64, max_wait=0.0)
    infos: list[PassInfo] = []
    coalescer.add_listener(infos.append)
    first = held_pass(coalescer, run)
    futures = [coalescer.submit("q", [n, -1] if n == 5 else [n]) for n in range(8)]
    run.gate.set()
    first.result(WAIT)
    for n, future in enumerate(futures):
        if n == 5:
            with pytest.raises(ValueError, match="poison"):
                future.result(WAIT)
        else:
            assert future.result(WAIT) == [2 * n]
    assert infos[-1].calls == 8 and infos[-1].failed_calls == 1
    # split in halves down to the poison call: 1 + 2 + 2 + 2 runs, not one per call
    assert infos[-1].runs == 7


def test_a_lone_failing_call_raises_in_its_caller() -> None:
    coalescer = Coalescer(Recorder(), max_batch=8, max_wait=0.0)
    with pytest.raises(ValueError, match="poison"):
        coalescer.call("q", [-1])
    assert coalescer.call("q", [1]) == [2]  # the coalescer is idle again


def test_a_call_cancelled_before_its_pass_is_dropped() -> None:
    run = Recorder()
    coalescer = Coalescer(run, max_batch=64, max_wait=0.0)
    first = held_pass(coalescer, run)
    kept, cancelled = coalescer.submit("q", [1]), coalescer.submit("q", [2])
    assert cancelled.cancel()
    run.gate.set()
    first.result(WAIT)
    assert kept.result(WAIT) == [2]
    assert run.passes[1:] == [("q", [1])]


def after_a_loaded_pass(max_wait: float) -> tuple[Coalescer[str, int, int], Recorder]:
    """A coalescer whose last pass served two calls (load)."""
    run = Recorder()
    coalescer = Coalescer(run, max_batch=64, max_wait=max_wait)
    first = held_pass(coalescer, run)
    loaded = [coalescer.submit("q", [n]) for n in (1, 2)]
    run.gate.set()
    for future in (first, *loaded):
        future.result(WAIT)
    assert run.passes[-1] == ("q", [1, 2])
    return coalescer, run


def test_under_load_the_next_pass_waits_for_as_many_calls_as_the_last() -> None:
    coalescer, run = after_a_loaded_pass(max_wait=3600.0)
    early = coalescer.submit("q", [3])
    time.sleep(0.05)  # room for a wrong implementation to start a pass of one
    late = coalescer.submit("q", [4])
    assert early.result(WAIT) == [6] and late.result(WAIT) == [8]
    assert run.passes[-1] == ("q", [3, 4])


def test_a_call_after_the_wait_of_a_loaded_pass_runs_at_once() -> None:
    coalescer, run = after_a_loaded_pass(max_wait=0.01)
    time.sleep(0.05)  # longer than max_wait: the load is over
    assert coalescer.call("q", [5]) == [10]
    assert run.threads[-1] == threading.current_thread().name


def test_options_are_checked_and_a_closed_coalescer_refuses_calls() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Coalescer(Recorder(), max_batch=0, max_wait=0.0)
    with pytest.raises(ValueError, match="max_wait"):
        Coalescer(Recorder(), max_batch=1, max_wait=-1.0)
    coalescer = Coalescer(Recorder(), max_batch=1, max_wait=0.0)
    coalescer.close()
    with pytest.raises(RuntimeError, match="closed"):
        coalescer.call("q", [1])
