"""Concurrent encoding calls gathered into shared forward passes.

An app encodes one short query per request, many requests at once. A forward pass over one query
costs nearly what a pass over a few dozen costs (the weights are read once either way), so calls
that arrive together are answered by one pass. The policy:

- A call that finds the coalescer idle (no pass running, nothing queued, no loaded pass that
  ended less than ``max_wait`` ago) runs at once, in the caller's own thread for a synchronous
  call: a lone query never waits for company.
- Calls that arrive while a pass runs wait in a FIFO queue. When the pass ends, the oldest queued
  call and the later ones with the same key (task and pruning options) form the next pass, up to
  ``max_batch`` items; a call is never split, and a call larger than ``max_batch`` gets a pass of
  its own.
- Under load (a pass that served several calls ended less than ``max_wait`` seconds ago), the
  next pass waits until that pass's end + ``max_wait`` at most, for as many calls as that pass
  served, so that callers who were just answered and call again at once join one pass instead
  of alternating between a pass of one and a pass of the rest.
- A pass that raises is split in two and each half run again, down to single calls: a failing
  input fails only its own caller, the others still get their answers.
- A call cancelled before its pass starts (an asyncio task that was cancelled) is dropped.

One pass runs at a time; calls through :meth:`Coalescer.submit` (asyncio) are run by a daemon
worker thread, started on first use.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Coalescer", "PassInfo"]

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class PassInfo:
    """What one gathered pass did, for metrics (see :meth:`Coalescer.add_listener`).

    Attributes:
        calls: Calls answered by the pass.
        items: Items (texts) of those calls.
        seconds: Time from the start of the pass to the last answer, retries included.
        failed_calls: Calls that got an exception (after the pass was split and retried).
        runs: Runs of the run function (1, or more when a failure split the pass).
    """

    calls: int
    items: int
    seconds: float
    failed_calls: int
    runs: int


@dataclass(eq=False)
class _Call(Generic[K, T, R]):
    key: K
    items: list[T]
    future: Future[list[R]]


class Coalescer(Generic[K, T, R]):
    """Gather concurrent calls of ``run(key, items) -> results`` (one result per item) into shared runs.

    Safe to use from many threads and event loops at once.

    Args:
        run: Runs one pass over the items of several calls with the same key; returns one result
            per item, in order.
        max_batch: Most items per pass (a larger call runs alone).
        max_wait: Under load, the longest a pass waits for more calls, in seconds (0: never waits).
        name: Name of the worker thread.

    Example:
        >>> c = Coalescer(lambda key, items: [key * x for x in items], max_batch=8, max_wait=0.0)
        >>> c.call(2, [1, 2, 3])
        [2, 4, 6]
        >>> c.submit(3, [1]).result()
        [3]
        >>> c.close()
    """

    def __init__(
        self,
        run: Callable[[K, list[T]], Sequence[R]],
        *,
        max_batch: int,
        max_wait: float,
        name: str = "sparsebridge-coalesce",
    ) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch <= 0:
            raise ValueError(f"max_batch must be a positive integer, got {max_batch!r}")
        if not max_wait >= 0:
            raise ValueError(f"max_wait must be a number of seconds >= 0, got {max_wait!r}")
        self.max_batch = max_batch
        self.max_wait = float(max_wait)
        self._run = run
        self._name = name
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: deque[_Call[K, T, R]] = deque()
        self._busy = False
        self._last_calls = 0
        self._loaded_until = 0.0  # monotonic time until which a new pass waits for company
        self._closed = False
        self._worker: threading.Thread | None = None
        self._listeners: list[Callable[[PassInfo], None]] = []

    @property
    def queued(self) -> int:
        """Calls waiting for a pass now."""
        return len(self._queue)

    def add_listener(self, listener: Callable[[PassInfo], None]) -> None:
        """Call ``listener(info)`` after every pass, in the thread that ran it (keep it fast)."""
        with self._lock:
            self._listeners.append(listener)

    def call(self, key: K, items: Sequence[T]) -> list[R]:
        """Results of ``items``, from a pass shared with concurrent calls; blocks until answered.

        Runs in the caller's thread when the coalescer is idle. Raises what the run raised for
        this call's items.
        """
        call = _Call[K, T, R](key, list(items), Future())
        with self._lock:
            self._check_open()
            inline = not self._busy and not self._queue and time.monotonic() >= self._loaded_until
            if inline:
                self._busy = True
            else:
                self._enqueue(call)
        if not inline:
            return call.future.result()
        call.future.set_running_or_notify_cancel()
        try:
            self._run_pass([call])
        finally:
            self._pass_done(1)
        return call.future.result()

    def submit(self, key: K, items: Sequence[T]) -> Future[list[R]]:
        """Queue ``items`` for a shared pass run by the worker thread; the future holds the results.

        Cancelling the future before its pass starts drops the call.
        """
        call = _Call[K, T, R](key, list(items), Future())
        with self._lock:
            self._check_open()
            self._enqueue(call)
        return call.future

    def close(self) -> None:
        """Refuse new calls; the worker answers the queued ones, then stops."""
        with self._lock:
            self._closed = True
            self._changed.notify_all()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this coalescer is closed")

    def _enqueue(self, call: _Call[K, T, R]) -> None:
        """Queue ``call`` and wake the worker (lock held)."""
        self._queue.append(call)
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._worker.start()
        self._changed.notify_all()

    def _pass_done(self, calls: int) -> None:
        with self._lock:
            self._busy = False
            self._last_calls = calls
            self._loaded_until = time.monotonic() + self.max_wait if calls > 1 else 0.0
            self._changed.notify_all()

    def _work(self) -> None:
        while True:
            with self._lock:
                while self._busy or not self._queue:
                    if self._closed and not self._queue:
                        return
                    self._changed.wait()
                self._busy = True
                calls = self._gather()
            try:
                if calls:
                    self._run_pass(calls)
            finally:
                self._pass_done(len(calls))

    def _gather(self) -> list[_Call[K, T, R]]:
        """The calls of the next pass (lock held; waits under load, see the module docstring)."""
        while not self._closed and not self._enough():
            remaining = self._loaded_until - time.monotonic()
            if remaining <= 0:
                break
            self._changed.wait(remaining)
        key: K | None = None
        taken: list[_Call[K, T, R]] = []
        items = 0
        kept: deque[_Call[K, T, R]] = deque()
        while self._queue:
            call = self._queue.popleft()
            if key is not None and (call.key != key or items + len(call.items) > self.max_batch):
                kept.append(call)
                if items >= self.max_batch:
                    break
                continue
            if not call.future.set_running_or_notify_cancel():
                continue  # cancelled while it waited
            key = call.key
            taken.append(call)
            items += len(call.items)
        kept.extend(self._queue)
        self._queue = kept
        return taken

    def _enough(self) -> bool:
        """Whether the queue holds a full pass: as many calls as the last pass, or max_batch items."""
        key = self._queue[0].key if self._queue else None
        same = [call for call in self._queue if call.key == key]
        return len(same) >= self._last_calls or sum(len(call.items) for call in same) >= self.max_batch

    def _run_pass(self, calls: list[_Call[K, T, R]]) -> None:
        started = time.monotonic()
        runs, failed = self._settle(calls)
        info = PassInfo(
            calls=len(calls),
            items=sum(len(call.items) for call in calls),
            seconds=time.monotonic() - started,
            failed_calls=failed,
            runs=runs,
        )
        for listener in list(self._listeners):
            try:
                listener(info)
            except Exception:  # a metrics callback must not fail the callers
                logger.exception("coalescer listener %r failed", listener)

    def _settle(self, calls: list[_Call[K, T, R]]) -> tuple[int, int]:
        """Run ``calls`` as one pass and answer each; on failure split in two and retry each half.

        Returns the number of runs and of calls that failed.
        """
        items = [item for call in calls for item in call.items]
        try:
            results = list(self._run(calls[0].key, items))
            if len(results) != len(items):
                raise RuntimeError(f"the run returned {len(results)} results for {len(items)} items")
        except Exception as error:
            if len(calls) == 1:
                calls[0].future.set_exception(error)
                return 1, 1
            logger.debug("a pass of %d calls failed (%s); retrying each half", len(calls), error)
            half = len(calls) // 2
            first_runs, first_failed = self._settle(calls[:half])
            second_runs, second_failed = self._settle(calls[half:])
            return 1 + first_runs + second_runs, first_failed + second_failed
        start = 0
        for call in calls:
            call.future.set_result(results[start : start + len(call.items)])
            start += len(call.items)
        return 1, 0
