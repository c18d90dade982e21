"""The ingest pipeline: read -> encode -> several concurrent writers, with bounded queues.

::

    reader thread      parse rows, find bad input and duplicate ids, count over-long texts
        | queue (queue_batches batches)
    calling thread     encode each batch (the encoder tokenises and runs the model)
        | queue (queue_batches batches)
    writer threads     backend.write(batch), ``writers`` of them at once
        |
    tracker            in input order: counters and dead-letter records, then the checkpoint
                       (:class:`~sparsebridge.ingest.run.Tracker`, into the run)

Every queue is bounded, so a slow sink blocks the encoder and the reader instead of filling
memory: at most ``(2 * queue_batches + writers + 2) * batch_size`` documents are in flight.

Each input item (bad rows included) has a ``position`` in input order. The tracker advances
the checkpoint to the end of the longest run of batches that are complete (every item
acknowledged, stale or dead-lettered), fsyncing the dead-letter file first; see
:mod:`sparsebridge.ingest.checkpoint`.

Bad input never stops the run and is never dropped silently: each bad item becomes one
dead-letter record (``type``: ``malformed``, ``invalid_utf8``, ``duplicate_key``, ``not_object``,
``missing_id``, ``empty_id``, ``missing_text``, ``empty_text``, ``bad_metadata``, ``duplicate_id`` (the first
occurrence wins), ``empty_vector``), and so does every item the engine refuses permanently
(``BulkWriteError``). When more than ``max_dead_letter_fraction`` of the items are
dead-lettered (checked from 1,000 items on, and at the end), the run stops with
:class:`DeadLetterLimitError`. Texts longer than the model's limit are truncated by the model:
they are counted (``IngestStats.truncated``), not refused. Any other failure (fatal backend
error, blocked index, retries exhausted) stops the run: in-flight writes finish, the
checkpoint covers what was acknowledged, and the error is raised.

The stages themselves (read, encode, write one batch) are in :mod:`sparsebridge.ingest.stages`,
the run (counters, checkpoint, dead letters, the run dir) in :mod:`sparsebridge.ingest.run`, the
options in :mod:`sparsebridge.ingest.options`; this module runs the stages on threads, with bounded
queues, and handles signals. ``short_gil_switches=True`` lowers the interpreter's GIL switch
interval while a run is in progress (process-wide; see
:class:`~sparsebridge.ingest.options.PipelineOptions`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from sparsebridge.backends.model_identity import ModelIdentity, check_model
from sparsebridge.errors import DeadLetterLimitError
from sparsebridge.ingest.checkpoint import target_identity
from sparsebridge.ingest.options import (
    SHORT_SWITCH_INTERVAL_S,
    PipelineOptions,
    PipelineShortcuts,
    Pruning,
    PruningShortcuts,
    RunOptions,
    RunShortcuts,
    grouped,
    unknown_keywords,
)
from sparsebridge.ingest.run import IngestStats, Run, Tracker
from sparsebridge.ingest.sink import Sink
from sparsebridge.ingest.sources import DictSource, ItemSource, input_name
from sparsebridge.ingest.stages import Batch, TokenCounter, encode_batch, read_batches, write_batch
from sparsebridge.types import Document

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from sparsebridge.encoder import Encoder
    from sparsebridge.encoder.dense import DenseEncoder

__all__ = ["SHORT_SWITCH_INTERVAL_S", "DeadLetterLimitError", "IngestShortcuts", "IngestStats", "ingest"]

logger = logging.getLogger(__name__)


class _ShortGilSwitches:
    """Lower the GIL switch interval while at least one opted-in run is in progress."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs = 0
        self._saved = 0.0

    def __enter__(self) -> None:
        with self._lock:
            if self._runs == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved, SHORT_SWITCH_INTERVAL_S))
            self._runs += 1

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self._runs -= 1
            if self._runs == 0:
                sys.setswitchinterval(self._saved)


_short_gil_switches = _ShortGilSwitches()


class IngestShortcuts(RunShortcuts, PipelineShortcuts, PruningShortcuts, total=False):
    """Every field of :func:`ingest`'s option groups, as a keyword of its own."""


def ingest(
    documents: Iterable[Document] | Iterable[dict[str, Any]] | ItemSource,
    *,
    encoder: Encoder,
    backend: Sink,
    dense_encoder: DenseEncoder | None = None,
    run: RunOptions | None = None,
    pipeline: PipelineOptions | None = None,
    pruning: Pruning | None = None,
    on_batch: Callable[[int], None] | None = None,
    on_progress: Callable[[IngestStats], None] | None = None,
    **shortcuts: Unpack[IngestShortcuts],
) -> IngestStats:
    """Check the backend's schema, then read, encode and write ``documents`` with overlapped stages.

    Args:
        documents: Documents, dicts (``id``, ``text``, other fields as metadata; a Hugging Face
            ``datasets.Dataset`` is one), or a source with ``items()`` (:mod:`~sparsebridge.ingest.sources`).
        encoder: The sparse encoder.
        backend: Where to write (any :class:`~sparsebridge.backends.Backend`, or another
            :class:`~sparsebridge.ingest.sink.Sink`); its schema is checked before any encoding.
        dense_encoder: Also store a dense embedding of each document.
        run: The run: its directory (checkpoint, dead letters, resume), run number, dead-letter
            limit, model check (:class:`~sparsebridge.ingest.options.RunOptions`).
        pipeline: Batch size, writers, queues, signals, GIL switches
            (:class:`~sparsebridge.ingest.options.PipelineOptions`).
        pruning: Which weights each vector keeps (:class:`~sparsebridge.ingest.options.Pruning`).
        on_batch: Called from the calling thread with the number of items newly done.
        on_progress: Called from the calling thread with live stats, at most about twice a second
            (while it encodes a batch, after that batch).
        **shortcuts: Any field of the three groups as a keyword of its own (``run_dir=...``,
            ``writers=...``, ``top_k=...``): it replaces that field of its group.

    Returns:
        The counters of this run (see :class:`IngestStats`).

    Raises:
        InputError: Another run holds the run directory (in this process or another), or it cannot
            be written.
        SchemaMismatchError: The existing index or collection does not match, or records another
            model (before any encoding).
        DeadLetterLimitError: Too many dead-lettered items.
        BackendError: A fatal or persistent backend failure; the checkpoint covers what was
            acknowledged before it.

    Example:
        >>> stats = ingest([{"id": 1, "text": "hello"}], encoder=enc, backend=b)  # doctest: +SKIP
        >>> stats = ingest(docs, encoder=enc, backend=b, run=RunOptions(run_dir=Path("runs/docs")),
        ...                pipeline=PipelineOptions(writers=4))  # doctest: +SKIP
    """
    unknown_keywords(shortcuts, RunOptions, PipelineOptions, Pruning)
    run = grouped(run or RunOptions(), shortcuts)
    layout = grouped(pipeline or PipelineOptions(), shortcuts)
    pruning = grouped(pruning or Pruning(), shortcuts)
    batch_size = layout.batch_size or int(getattr(encoder, "suggested_batch_size", 256))
    source: ItemSource = documents if isinstance(documents, ItemSource) else DictSource(documents)
    source_name = input_name(source)
    # the target is recorded where a checkpoint is saved, and compared on resume
    target = target_identity(backend) if run.run_dir is not None else ""
    with Run.open(run, source=source_name, target=target, writers=layout.writers) as state:
        backend.ensure_schema()  # preflight: a wrong schema or another model fails before any encoding
        check_model(backend, ModelIdentity.of(encoder), record=True, allow_mismatch=run.allow_model_mismatch)
        if state.done:
            logger.info("run %d is already complete; nothing to do", state.checkpoint.run_number)
            return state.stats
        encode = functools.partial(
            encode_batch,
            encoder=encoder,
            dense_encoder=dense_encoder,
            top_k=pruning.top_k,
            min_weight=pruning.min_weight,
            run_number=state.checkpoint.run_number,
        )
        threads = _Pipeline(
            Tracker(state),
            encode=encode,
            backend=backend,
            writers=layout.writers,
            queue_batches=layout.queue_batches,
        )
        batches = read_batches(
            source,
            batch_size=batch_size,
            start=state.checkpoint.position,
            tokens=TokenCounter.for_encoder(encoder),
            stopped=threads.stopped,
        )
        progress = _Progress(state.stats, on_batch, on_progress)
        restore = _install_signals(threads.stop) if layout.handle_signals else None
        try:
            with _short_gil_switches if layout.short_gil_switches else contextlib.nullcontext():
                threads.run(batches, progress.tick)
        finally:
            if restore is not None:
                restore()
        try:
            return state.finish(
                threads.error,
                elapsed_s=time.perf_counter() - progress.started,
                interrupted=threads.stop.is_set(),
            )
        finally:
            progress.finish()


class _Stop(Exception):
    """The run was aborted elsewhere; leave quietly."""


class _Pipeline:
    """The threads of one run, joined by bounded queues.

    A reader thread feeds ``read_q``; the calling thread encodes (torch's OpenMP pool belongs to
    the thread that made it, and the calling thread has usually made one already, loading or
    using the model; a second pool in a new thread makes libgomp count more threads than cores
    and park its workers after ~1,000 spins instead of ~300,000, so every parallel region waits
    on a futex wake-up; bench/results/ingest-cpu-2core.md has the measurements) and feeds
    ``encoded_q``;
    ``writers`` writer threads write and hand each batch to the tracker. The first error aborts
    every stage (``abort``); a signal stops the reading only (``stop``).
    """

    def __init__(
        self,
        tracker: Tracker,
        *,
        encode: Callable[[Batch], None],
        backend: Sink,
        writers: int,
        queue_batches: int,
    ) -> None:
        self.tracker = tracker
        self.encode = encode
        self.backend = backend
        self.writers = writers
        self.read_q: queue.Queue[Batch | None] = queue.Queue(maxsize=queue_batches)
        self.encoded_q: queue.Queue[Batch | None] = queue.Queue(maxsize=queue_batches)
        self.abort = threading.Event()  # stop everything (an error)
        self.stop = threading.Event()  # stop reading, finish what is in flight (a signal)
        self.error: BaseException | None = None

    def stopped(self) -> bool:
        """Whether the reader should stop (a signal or an error)."""
        return self.stop.is_set() or self.abort.is_set()

    def run(self, batches: Iterator[Batch], tick: Callable[[], None]) -> None:
        """Start the reader and the writers, encode on this thread, return when every thread is done."""
        threads = [
            threading.Thread(target=self._read, args=(batches,), name="sparsebridge-reader", daemon=True)
        ]
        threads += [
            threading.Thread(target=self._write, name=f"sparsebridge-writer-{i}", daemon=True)
            for i in range(self.writers)
        ]
        for thread in threads:
            thread.start()
        self._encode(tick)
        while any(t.is_alive() for t in threads):
            time.sleep(0.1)
            tick()

    def _fail(self, error: BaseException) -> None:
        with self.tracker.lock:
            if self.error is None:
                self.error = error
        self.abort.set()

    def _read(self, batches: Iterator[Batch]) -> None:
        try:
            for batch in batches:
                self.tracker.read(batch)
                self._put(self.read_q, batch)
            self._put(self.read_q, None)
        except _Stop:
            pass
        except BaseException as e:
            self._fail(e)

    def _encode(self, tick: Callable[[], None]) -> None:
        try:
            while (batch := self._get(self.read_q, tick)) is not None:
                started = time.perf_counter()
                self.encode(batch)
                self.tracker.busy(encode_s=time.perf_counter() - started)
                tick()
                self._put(self.encoded_q, batch, tick)
            for _ in range(self.writers):
                self._put(self.encoded_q, None, tick)
        except _Stop:
            pass
        except Exception as e:
            self._fail(e)
        except BaseException:  # KeyboardInterrupt, SystemExit: leave now, stop the threads soon
            self.abort.set()
            raise

    def _write(self) -> None:
        try:
            while (batch := self._get(self.encoded_q)) is not None:
                started = time.perf_counter()
                written = write_batch(batch, self.backend)
                self.tracker.busy(write_s=time.perf_counter() - started)
                self.tracker.complete(batch, written)
        except _Stop:
            pass
        except BaseException as e:
            self._fail(e)

    def _put(
        self, q: queue.Queue[Batch | None], item: Batch | None, tick: Callable[[], None] | None = None
    ) -> None:
        """Put ``item``, calling ``tick`` every 0.1 s while the queue is full."""
        while True:
            if self.abort.is_set():
                raise _Stop
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                if tick is not None:
                    tick()

    def _get(self, q: queue.Queue[Batch | None], tick: Callable[[], None] | None = None) -> Batch | None:
        """Take the next item, calling ``tick`` every 0.1 s while the queue is empty."""
        while True:
            if self.abort.is_set():
                raise _Stop
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if tick is not None:
                    tick()


class _Progress:
    """Reports progress from the calling thread: ``on_batch`` with newly done items, ``on_progress``
    at most about twice a second; keeps ``stats.elapsed_s`` current."""

    def __init__(
        self,
        stats: IngestStats,
        on_batch: Callable[[int], None] | None,
        on_progress: Callable[[IngestStats], None] | None,
    ) -> None:
        self.stats = stats
        self.on_batch = on_batch
        self.on_progress = on_progress
        self.started = time.perf_counter()
        self._reported = stats.position
        self._next_report = self.started

    def tick(self) -> None:
        now = time.perf_counter()
        self.stats.elapsed_s = now - self.started
        if self.on_batch is not None and self.stats.position > self._reported:
            self.on_batch(self.stats.position - self._reported)
            self._reported = self.stats.position
        if self.on_progress is not None and now >= self._next_report:
            self.on_progress(self.stats)
            self._next_report = now + 0.5

    def finish(self) -> None:
        if self.on_batch is not None and self.stats.position > self._reported:
            self.on_batch(self.stats.position - self._reported)
        if self.on_progress is not None:
            self.on_progress(self.stats)


def _install_signals(stop: threading.Event) -> Callable[[], None] | None:
    """On SIGINT/SIGTERM set ``stop`` (a second signal raises KeyboardInterrupt); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second signal: stop hard
            raise KeyboardInterrupt
        logger.warning("signal %d: finishing the batches in flight, then writing the checkpoint", signum)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore
