"""The ingest pipeline: read -> encode -> several concurrent writers, with bounded queues.

::

    reader thread      parse rows, find bad input and duplicate ids, count over-long texts
        | queue (queue_batches batches)
    calling thread     encode each batch (the encoder tokenises and runs the model)
        | queue (queue_batches batches)
    writer threads     backend.write(batch), ``writers`` of them at once
        |
    tracker            in input order: dead-letter records, then the checkpoint

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

The stages themselves (read, encode, write one batch) are in :mod:`sparsebridge.ingest.stages`;
this module runs them on threads and tracks the checkpoint. ``short_gil_switches=True`` lowers the
interpreter's GIL switch interval while a run is in progress (process-wide; see :func:`ingest`).
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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsebridge.backends.base import Backend, WriteStats
from sparsebridge.backends.model_identity import ModelIdentity, check_model
from sparsebridge.errors import DeadLetterLimitError, InputError
from sparsebridge.ingest.checkpoint import (
    DEAD_LETTER_NAME,
    Checkpoint,
    DeadLetter,
    DeadLetterFile,
    InputFingerprint,
    RunDirLock,
    same_target,
    target_identity,
)
from sparsebridge.ingest.sources import DictSource, ItemSource
from sparsebridge.ingest.stages import Batch, TokenCounter, encode_batch, read_batches, write_batch
from sparsebridge.types import Document

if TYPE_CHECKING:
    from sparsebridge.encoder import Encoder
    from sparsebridge.encoder.dense import DenseEncoder

__all__ = ["SHORT_SWITCH_INTERVAL_S", "DeadLetterLimitError", "IngestStats", "ingest"]

logger = logging.getLogger(__name__)

SHORT_SWITCH_INTERVAL_S = 0.0005
"""The GIL switch interval a run with ``short_gil_switches=True`` sets (at most)."""

_MIN_ITEMS_FOR_FRACTION = 1000
_KEPT_DEAD_LETTERS = 1000


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


@dataclass
class IngestStats:
    """What a run did, live (``on_progress``) and at the end.

    ``written`` items acknowledged by the engine; ``stale`` refused because the engine holds the
    same or a newer run's version; ``dead_lettered`` never written (bad input or refused by the
    engine; the first ``dead_letters`` are kept here too); ``truncated`` texts longer than the
    model's limit; ``retries`` item re-sends; ``position`` the checkpoint (items done, in input
    order, counting from the start of the input); ``skipped`` items a resume skipped;
    ``in_flight`` items read and not yet finished by a writer (bounded by the queues).
    """

    written: int = 0
    batches: int = 0
    stale: int = 0
    retries: int = 0
    dead_lettered: int = 0
    truncated: int = 0
    read: int = 0
    skipped: int = 0
    position: int = 0
    run_number: int | None = None
    writers: int = 1
    elapsed_s: float = 0.0
    encode_busy_s: float = 0.0
    write_busy_s: float = 0.0
    interrupted: bool = False
    in_flight: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)

    @property
    def docs_per_s(self) -> float:
        """Items done per second of wall time in this run."""
        return (self.position - self.skipped) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def encode_busy(self) -> float:
        """Fraction of the wall time the encoder was working (not waiting for input or room)."""
        return self.encode_busy_s / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def write_busy(self) -> float:
        """Fraction of the writers' wall time spent in ``backend.write`` (averaged over writers)."""
        return self.write_busy_s / (self.elapsed_s * self.writers) if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        """One line for people."""
        return (
            f"{self.written} written, {self.stale} stale, {self.dead_lettered} dead-lettered, "
            f"{self.truncated} truncated, {self.retries} retries in {self.elapsed_s:.1f}s "
            f"({self.docs_per_s:.0f} docs/s; encoder busy {self.encode_busy:.0%}, "
            f"writers busy {self.write_busy:.0%})"
        )

    def to_json(self) -> dict[str, Any]:
        """Every counter and rate as JSON (dead-letter records excluded: they are in their file)."""
        data = asdict(self)
        del data["dead_letters"]
        data.update(docs_per_s=self.docs_per_s, encode_busy=self.encode_busy, write_busy=self.write_busy)
        return data


def ingest(
    documents: Iterable[Document] | Iterable[dict[str, Any]] | ItemSource,
    *,
    encoder: Encoder,
    backend: Backend,
    batch_size: int | None = None,
    top_k: int | None = None,
    min_weight: float = 0.0,
    on_batch: Callable[[int], None] | None = None,
    dense_encoder: DenseEncoder | None = None,
    run_dir: Path | None = None,
    resume: bool = False,
    run_number: int | None = None,
    writers: int = 2,
    queue_batches: int = 2,
    max_dead_letter_fraction: float = 0.01,
    on_progress: Callable[[IngestStats], None] | None = None,
    handle_signals: bool = False,
    short_gil_switches: bool = False,
    allow_model_mismatch: bool = False,
) -> IngestStats:
    """Check the backend's schema, then read, encode and write ``documents`` with overlapped stages.

    Args:
        documents: Documents, dicts (``id``, ``text``, other fields as metadata; a Hugging Face
            ``datasets.Dataset`` is one), or a source with ``items()`` (:mod:`~sparsebridge.ingest.sources`).
        encoder: The sparse encoder.
        backend: Where to write; its schema is checked before any encoding.
        batch_size: Items per batch (encoder call and ``backend.write`` call); by default the
            encoder's ``suggested_batch_size`` (16,384 per GPU, 256 on a CPU).
        top_k: Keep at most this many weights per vector.
        min_weight: Drop weights <= this.
        on_batch: Called from the calling thread with the number of items newly done.
        dense_encoder: Also store a dense embedding of each document.
        run_dir: Where the checkpoint and the dead-letter file live (none: dead letters are kept
            in ``IngestStats.dead_letters`` only, and the run cannot be resumed). The run holds
            its lock throughout (:class:`~sparsebridge.ingest.checkpoint.RunDirLock`).
        resume: Continue the run whose checkpoint is in ``run_dir``, with its run number.
        run_number: The version every write carries (default: a new run takes the larger of the
            time in milliseconds and the previous run number in ``run_dir`` plus one).
        writers: Concurrent ``backend.write`` calls.
        queue_batches: Batches each queue between stages holds.
        max_dead_letter_fraction: Stop when more than this fraction of items is dead-lettered.
        on_progress: Called from the calling thread with live stats, at most about twice a second
            (while it encodes a batch, after that batch).
        handle_signals: On SIGINT/SIGTERM (main thread only), stop reading, finish the batches in
            flight, write the checkpoint and return with ``interrupted=True``.
        short_gil_switches: While the run is in progress, lower the interpreter's GIL switch
            interval to :data:`SHORT_SWITCH_INTERVAL_S` (0.5 ms). This is process-wide state:
            every thread of the process switches more often until the last such run ends, when
            the previous interval is restored. It lets the encoder take the GIL back quickly from
            the reader and the writers (it gives the GIL up for every torch operation, and with
            the default 5 ms interval waits up to 5 ms for it while the torch threads idle);
            on a 2-core CPU writing to embedded Qdrant that was 5-15% of the encoder's rate.
            Off by default; the ``sparsebridge`` CLI, which owns its process, turns it on.
        allow_model_mismatch: Write even when the target records another model
            (:mod:`~sparsebridge.backends.model_identity`); by default that is refused.

    Returns:
        The counters of this run (see :class:`IngestStats`).

    Raises:
        InputError: Another run holds ``run_dir`` (in this process or another), or it cannot be
            written.
        SchemaMismatchError: The existing index or collection does not match, or records another
            model (before any encoding).
        DeadLetterLimitError: Too many dead-lettered items.
        BackendError: A fatal or persistent backend failure; the checkpoint covers what was
            acknowledged before it.

    Example:
        >>> stats = ingest([{"id": 1, "text": "hello"}], encoder=enc, backend=b)  # doctest: +SKIP
        >>> stats.written  # doctest: +SKIP
        1
    """
    if batch_size is None:
        batch_size = int(getattr(encoder, "suggested_batch_size", 256))
    _check_options(batch_size, writers, queue_batches, max_dead_letter_fraction, run_number)
    source: ItemSource = documents if isinstance(documents, ItemSource) else DictSource(documents)
    source_name = str(getattr(source, "path", "") or "")
    with run_dir_lock(run_dir):  # one run at a time in a run dir
        checkpoint, dead_letter = open_run(run_dir, resume, run_number, source_name, describe_target(backend))

        backend.ensure_schema()  # preflight: a wrong schema or another model fails before any encoding
        check_model(backend, ModelIdentity.of(encoder), record=True, allow_mismatch=allow_model_mismatch)

        stats = IngestStats(
            run_number=checkpoint.run_number,
            writers=writers,
            skipped=checkpoint.position,
            position=checkpoint.position,
        )
        tracker = _Tracker(checkpoint, run_dir, dead_letter, stats, max_dead_letter_fraction)
        if checkpoint.done:
            logger.info("run %d is already complete; nothing to do", checkpoint.run_number)
            tracker.close()
            return stats
        encode = functools.partial(
            encode_batch,
            encoder=encoder,
            dense_encoder=dense_encoder,
            top_k=top_k,
            min_weight=min_weight,
            run_number=checkpoint.run_number,
        )
        pipeline = _Pipeline(
            tracker, encode=encode, backend=backend, writers=writers, queue_batches=queue_batches
        )
        batches = read_batches(
            source,
            batch_size=batch_size,
            start=checkpoint.position,
            tokens=TokenCounter.for_encoder(encoder),
            stopped=pipeline.stopped,
        )
        progress = _Progress(stats, on_batch, on_progress)
        restore = _install_signals(pipeline.stop) if handle_signals else None
        try:
            with _short_gil_switches if short_gil_switches else contextlib.nullcontext():
                pipeline.run(batches, progress.tick)
        finally:
            if restore is not None:
                restore()
        return _finish(pipeline, tracker, progress)


def _check_options(
    batch_size: int, writers: int, queue_batches: int, max_dead_letter_fraction: float, run_number: int | None
) -> None:
    if batch_size <= 0 or writers <= 0 or queue_batches <= 0:
        raise ValueError("batch_size, writers and queue_batches must be positive")
    if not 0 <= max_dead_letter_fraction <= 1:
        raise ValueError("max_dead_letter_fraction must be in [0, 1]")
    if run_number is not None and (isinstance(run_number, bool) or run_number <= 0):
        raise ValueError("run_number must be a positive integer")


class _Tracker:
    """Finishes batches in input order: dead-letter records, counters, then the checkpoint.

    Writers finish batches in any order; the checkpoint advances to the end of the longest run of
    finished batches from the start (see :mod:`sparsebridge.ingest.checkpoint`). ``lock`` guards
    the stats too.
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        run_dir: Path | None,
        dead_letter: DeadLetterFile | None,
        stats: IngestStats,
        max_fraction: float,
    ) -> None:
        self.checkpoint = checkpoint
        self.run_dir = run_dir
        self.dead_letter = dead_letter
        self.stats = stats
        self.max_fraction = max_fraction
        self.lock = threading.Lock()
        self._next_seq = 0
        self._completed: dict[int, tuple[Batch, WriteStats]] = {}
        self._reasons: Counter[str] = Counter()

    def complete(self, batch: Batch, written: WriteStats) -> None:
        """Record a finished batch; advance the checkpoint over every contiguous finished batch.

        Raises:
            DeadLetterLimitError: Too many items dead-lettered so far (from 1,000 items on).
        """
        batch.docs, batch.records = [], []  # done: keep only the counts and the dead letters
        with self.lock:
            self.stats.in_flight -= batch.size
            self._completed[batch.seq] = (batch, written)
            if self._next_seq not in self._completed:
                return
            while self._next_seq in self._completed:
                done, ws = self._completed.pop(self._next_seq)
                self._next_seq += 1
                self._account(done, ws)
            self._save()
            if self.checkpoint.position >= _MIN_ITEMS_FOR_FRACTION:
                self.check_fraction()

    def _account(self, batch: Batch, written: WriteStats) -> None:
        cp, stats = self.checkpoint, self.stats
        cp.written += written.written
        cp.stale += written.stale
        cp.truncated += batch.truncated
        cp.position = batch.end
        stats.written += written.written
        stats.stale += written.stale
        stats.truncated += batch.truncated
        stats.batches += 1
        for letter in sorted(batch.letters, key=lambda d: d.position):
            cp.dead_lettered += 1
            stats.dead_lettered += 1
            self._reasons[letter.type] += 1
            if self.dead_letter is not None:
                self.dead_letter.write(letter)
            if len(stats.dead_letters) < _KEPT_DEAD_LETTERS:
                stats.dead_letters.append(letter)
        stats.position = cp.position

    def _save(self) -> None:
        if self.dead_letter is not None:
            self.checkpoint.dead_letter_bytes = self.dead_letter.sync()
        if self.run_dir is not None:
            self.checkpoint.save(self.run_dir)

    def save(self) -> None:
        """Sync the dead-letter file, then write the checkpoint."""
        with self.lock:
            self._save()

    def close(self) -> None:
        """Close the dead-letter file."""
        if self.dead_letter is not None:
            self.dead_letter.close()

    def check_fraction(self) -> None:
        """Raise :class:`DeadLetterLimitError` if more than the allowed fraction was dead-lettered."""
        cp = self.checkpoint
        if cp.position and cp.dead_lettered > self.max_fraction * cp.position:
            reasons = ", ".join(f"{k.replace('_', ' ')}: {n}" for k, n in self._reasons.most_common())
            raise DeadLetterLimitError(
                f"{cp.dead_lettered} of {cp.position} items were dead-lettered ({reasons}), more than "
                f"the allowed fraction {self.max_fraction}; the run stopped (checkpoint at {cp.position}, "
                f"{cp.written} written)"
            )


class _Stop(Exception):
    """The run was aborted elsewhere; leave quietly."""


class _Pipeline:
    """The threads of one run, joined by bounded queues.

    A reader thread feeds ``read_q``; the calling thread encodes (torch's OpenMP pool belongs to
    the thread that made it, and the calling thread has usually made one already, loading or
    using the model; a second pool in a new thread makes libgomp count more threads than cores
    and park its workers after ~1,000 spins instead of ~300,000, so every parallel region waits
    on a futex wake-up: 5-10% of the encode rate on a 2-core CPU) and feeds ``encoded_q``;
    ``writers`` writer threads write and hand each batch to the tracker. The first error aborts
    every stage (``abort``); a signal stops the reading only (``stop``).
    """

    def __init__(
        self,
        tracker: _Tracker,
        *,
        encode: Callable[[Batch], None],
        backend: Backend,
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
        stats = self.tracker.stats
        try:
            for batch in batches:
                with self.tracker.lock:
                    stats.read += batch.size
                    stats.in_flight += batch.size
                self._put(self.read_q, batch)
            self._put(self.read_q, None)
        except _Stop:
            pass
        except BaseException as e:
            self._fail(e)

    def _encode(self, tick: Callable[[], None]) -> None:
        stats = self.tracker.stats
        try:
            while (batch := self._get(self.read_q, tick)) is not None:
                started = time.perf_counter()
                self.encode(batch)
                with self.tracker.lock:
                    stats.encode_busy_s += time.perf_counter() - started
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
        stats = self.tracker.stats
        try:
            while (batch := self._get(self.encoded_q)) is not None:
                started = time.perf_counter()
                written = write_batch(batch, self.backend)
                with self.tracker.lock:
                    stats.write_busy_s += time.perf_counter() - started
                    stats.retries += written.retries
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


def _finish(pipeline: _Pipeline, tracker: _Tracker, progress: _Progress) -> IngestStats:
    """Close the run: the final fraction check, ``done``, the last checkpoint; raise the run's error."""
    stats, checkpoint = tracker.stats, tracker.checkpoint
    stats.elapsed_s = time.perf_counter() - progress.started
    error = pipeline.error
    stats.interrupted = pipeline.stop.is_set() and error is None
    try:
        if error is None and not stats.interrupted:
            try:
                tracker.check_fraction()
            except DeadLetterLimitError as e:
                error = e
            else:
                checkpoint.done = True
        tracker.save()
    finally:
        tracker.close()
    progress.finish()
    if error is not None:
        raise error
    if stats.read == 0 and checkpoint.position == 0:
        raise InputError("no documents")
    logger.info("run %d: %s", checkpoint.run_number, stats.summary())
    return stats


def run_dir_lock(run_dir: Path | None) -> contextlib.AbstractContextManager[Any]:
    """The run dir's lock (:class:`RunDirLock`) held for a whole run; nothing without a run dir."""
    return RunDirLock(run_dir) if run_dir is not None else contextlib.nullcontext()


def describe_target(backend: Backend) -> str:
    """The target a run writes to, as recorded in its checkpoint (:func:`target_identity`)."""
    return target_identity(backend)


def open_run(
    run_dir: Path | None, resume: bool, run_number: int | None, source: str, target: str
) -> tuple[Checkpoint, DeadLetterFile | None]:
    """The checkpoint and dead-letter file of a new run, or of the run to resume, in ``run_dir``.

    Raises:
        InputError: Nothing to resume, or the run in ``run_dir`` was for another input or target.
        ValueError: ``resume`` without a run directory, or another run number than the run's.
    """
    previous = Checkpoint.load(run_dir) if run_dir is not None else None
    if resume:
        if run_dir is None:
            raise ValueError("resume needs a run directory")
        if previous is None:
            raise InputError(f"no checkpoint to resume in {run_dir}")
        if run_number is not None and run_number != previous.run_number:
            raise ValueError(f"the run to resume has run number {previous.run_number}, not {run_number}")
        for what, old, new in (("input", previous.source, source), ("target", previous.target, target)):
            if old and new and old != new and not (what == "target" and same_target(old, new)):
                raise InputError(f"the run in {run_dir} was for {what} {old!r}, not {new!r}")
        recorded = previous.input
        changes = InputFingerprint.of(Path(source)).changes(recorded) if source and recorded else []
        if changes:
            raise InputError(
                f"the input changed since the run in {run_dir} began ({', '.join(changes)}): a resume "
                "would skip or repeat documents; start a new run (without resume)",
                source=source,
            )
        logger.info("resuming run %d at item %d", previous.run_number, previous.position)
        letters = DeadLetterFile(run_dir / DEAD_LETTER_NAME, truncate_at=previous.dead_letter_bytes)
        return previous, letters
    if run_number is None:
        run_number = max(int(time.time() * 1000), previous.run_number + 1 if previous else 1)
    fingerprint = InputFingerprint.of(Path(source)).to_json() if source else {}
    checkpoint = Checkpoint(run_number, source=source, target=target, input=fingerprint)
    if run_dir is None:
        return checkpoint, None
    letters = DeadLetterFile(run_dir / DEAD_LETTER_NAME)
    checkpoint.save(run_dir)
    return checkpoint, letters


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
