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
dead-letter record (``type``: ``malformed``, ``invalid_utf8``, ``not_object``, ``missing_id``,
``empty_id``, ``missing_text``, ``empty_text``, ``bad_metadata``, ``duplicate_id`` (the first
occurrence wins), ``empty_vector``), and so does every item the engine refuses permanently
(``BulkWriteError``). When more than ``max_dead_letter_fraction`` of the items are
dead-lettered (checked from 1,000 items on, and at the end), the run stops with
:class:`DeadLetterLimitError`. Texts longer than the model's limit are truncated by the model:
they are counted (``IngestStats.truncated``), not refused. Any other failure (fatal backend
error, blocked index, retries exhausted) stops the run: in-flight writes finish, the
checkpoint covers what was acknowledged, and the error is raised.

While a run is in progress the interpreter's GIL switch interval is at most 0.5 ms (restored when
the last concurrent run ends). The encoder thread gives up the GIL for every torch operation and,
with the default 5 ms interval, waits up to 5 ms to get it back whenever a writer or the reader
runs Python meanwhile (an embedded-Qdrant write is pure Python), while the torch threads idle.
On a 2-core CPU that cost the pipeline 5-15% of the encoder's rate.
"""

from __future__ import annotations

import copy
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

from sparsebridge.backends.base import Backend, Record, WriteStats
from sparsebridge.encoder import Encoder
from sparsebridge.errors import BulkWriteError, DeadLetterLimitError, InputError
from sparsebridge.ingest.checkpoint import DEAD_LETTER_NAME, Checkpoint, DeadLetter, DeadLetterFile
from sparsebridge.ingest.sources import BadInput, DictSource, ItemSource
from sparsebridge.types import Document

if TYPE_CHECKING:
    from sparsebridge.encoder.dense import DenseEncoder

__all__ = ["DeadLetterLimitError", "IngestStats", "ingest"]

logger = logging.getLogger(__name__)

_MIN_ITEMS_FOR_FRACTION = 1000
_KEPT_DEAD_LETTERS = 1000
_SWITCH_INTERVAL_S = 0.0005


class _ShortGilSwitches:
    """Lower the GIL switch interval while at least one run is in progress (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs = 0
        self._saved = 0.0

    def __enter__(self) -> None:
        with self._lock:
            if self._runs == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved, _SWITCH_INTERVAL_S))
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


@dataclass
class _Batch:
    seq: int
    end: int  # position after the last item
    docs: list[tuple[int, Document]] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    truncated: int = 0
    size: int = 0  # items read into this batch


class _Stop(Exception):
    """The run was aborted elsewhere; leave quietly."""


class _Run:
    """The shared state of one pipeline run: queues, events, counters and the tracker."""

    def __init__(
        self,
        *,
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
        self.abort = threading.Event()  # stop everything (an error)
        self.stop = threading.Event()  # stop reading, finish what is in flight (a signal)
        self.error: BaseException | None = None
        self.next_seq = 0
        self.completed: dict[int, tuple[_Batch, WriteStats]] = {}
        self.reasons: Counter[str] = Counter()

    def fail(self, error: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = error
        self.abort.set()

    def put(
        self, q: queue.Queue[_Batch | None], item: _Batch | None, tick: Callable[[], None] | None = None
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

    def get(self, q: queue.Queue[_Batch | None], tick: Callable[[], None] | None = None) -> _Batch | None:
        """Take the next item, calling ``tick`` every 0.1 s while the queue is empty."""
        while True:
            if self.abort.is_set():
                raise _Stop
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if tick is not None:
                    tick()

    def complete(self, batch: _Batch, written: WriteStats) -> None:
        """Record a finished batch; advance the checkpoint over every contiguous finished batch."""
        batch.docs, batch.records = [], []  # done: keep only the counts and the dead letters
        with self.lock:
            self.stats.in_flight -= batch.size
            self.completed[batch.seq] = (batch, written)
            advanced = False
            while self.next_seq in self.completed:
                done, ws = self.completed.pop(self.next_seq)
                self.next_seq += 1
                advanced = True
                cp = self.checkpoint
                cp.written += ws.written
                cp.stale += ws.stale
                cp.truncated += done.truncated
                cp.position = done.end
                self.stats.written += ws.written
                self.stats.stale += ws.stale
                self.stats.truncated += done.truncated
                self.stats.batches += 1
                for letter in sorted(done.letters, key=lambda d: d.position):
                    cp.dead_lettered += 1
                    self.stats.dead_lettered += 1
                    self.reasons[letter.type] += 1
                    if self.dead_letter is not None:
                        self.dead_letter.write(letter)
                    if len(self.stats.dead_letters) < _KEPT_DEAD_LETTERS:
                        self.stats.dead_letters.append(letter)
                self.stats.position = cp.position
            if not advanced:
                return
            self._save()
            if self.checkpoint.position >= _MIN_ITEMS_FOR_FRACTION:
                self.check_fraction()

    def _save(self) -> None:
        if self.dead_letter is not None:
            self.checkpoint.dead_letter_bytes = self.dead_letter.sync()
        if self.run_dir is not None:
            self.checkpoint.save(self.run_dir)

    def save(self) -> None:
        with self.lock:
            self._save()

    def check_fraction(self) -> None:
        cp = self.checkpoint
        if cp.position and cp.dead_lettered > self.max_fraction * cp.position:
            reasons = ", ".join(f"{k.replace('_', ' ')}: {n}" for k, n in self.reasons.most_common())
            raise DeadLetterLimitError(
                f"{cp.dead_lettered} of {cp.position} items were dead-lettered ({reasons}), more than "
                f"the allowed fraction {self.max_fraction}; the run stopped (checkpoint at {cp.position}, "
                f"{cp.written} written)"
            )


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
            in ``IngestStats.dead_letters`` only, and the run cannot be resumed).
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

    Returns:
        The counters of this run (see :class:`IngestStats`).

    Raises:
        SchemaMismatchError: The existing index or collection does not match (before any encoding).
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
    if batch_size <= 0 or writers <= 0 or queue_batches <= 0:
        raise ValueError("batch_size, writers and queue_batches must be positive")
    if not 0 <= max_dead_letter_fraction <= 1:
        raise ValueError("max_dead_letter_fraction must be in [0, 1]")
    if run_number is not None and (isinstance(run_number, bool) or run_number <= 0):
        raise ValueError("run_number must be a positive integer")
    source: ItemSource = documents if isinstance(documents, ItemSource) else DictSource(documents)
    source_name = str(getattr(source, "path", "") or "")
    target_name = _describe(backend)
    checkpoint, dead_letter = _open_run(run_dir, resume, run_number, source_name, target_name)

    backend.ensure_schema()  # preflight: a wrong schema fails before any encoding

    stats = IngestStats(
        run_number=checkpoint.run_number,
        writers=writers,
        skipped=checkpoint.position,
        position=checkpoint.position,
    )
    run = _Run(
        checkpoint=checkpoint,
        run_dir=run_dir,
        dead_letter=dead_letter,
        stats=stats,
        max_fraction=max_dead_letter_fraction,
    )
    if checkpoint.done:
        logger.info("run %d is already complete; nothing to do", checkpoint.run_number)
        if dead_letter is not None:
            dead_letter.close()
        return stats
    limit = _token_limit(encoder)
    encoded: queue.Queue[_Batch | None] = queue.Queue(maxsize=queue_batches)
    read_q: queue.Queue[_Batch | None] = queue.Queue(maxsize=queue_batches)

    def reader() -> None:
        try:
            for batch in _batches(source, batch_size, checkpoint.position, limit, run):
                with run.lock:
                    stats.in_flight += batch.size
                run.put(read_q, batch)
            run.put(read_q, None)
        except _Stop:
            pass
        except BaseException as e:
            run.fail(e)

    def encode_stage(tick: Callable[[], None]) -> None:
        try:
            while (batch := run.get(read_q, tick)) is not None:
                started = time.perf_counter()
                _encode(batch, encoder, dense_encoder, top_k, min_weight, checkpoint.run_number)
                with run.lock:
                    stats.encode_busy_s += time.perf_counter() - started
                tick()
                run.put(encoded, batch, tick)
            for _ in range(writers):
                run.put(encoded, None, tick)
        except _Stop:
            pass
        except Exception as e:
            run.fail(e)
        except BaseException:  # KeyboardInterrupt, SystemExit: leave now, stop the threads soon
            run.abort.set()
            raise

    def writer() -> None:
        try:
            while (batch := run.get(encoded)) is not None:
                started = time.perf_counter()
                written = _write(batch, backend)
                with run.lock:
                    stats.write_busy_s += time.perf_counter() - started
                    stats.retries += written.retries
                run.complete(batch, written)
        except _Stop:
            pass
        except BaseException as e:
            run.fail(e)

    # The encoder runs on the calling thread: torch's OpenMP pool belongs to the thread that made
    # it, and this one has usually made one already (loading or using the model). A second pool
    # in a new thread makes libgomp count more threads than cores and park its workers after
    # ~1,000 spins instead of ~300,000: every parallel region then waits on a futex wake-up,
    # which cost 5-10% of the encode rate on a 2-core CPU.
    threads = [threading.Thread(target=reader, name="sparsebridge-reader", daemon=True)]
    threads += [
        threading.Thread(target=writer, name=f"sparsebridge-writer-{i}", daemon=True) for i in range(writers)
    ]
    restore = _install_signals(run) if handle_signals else None
    started = time.perf_counter()
    reported = checkpoint.position
    next_report = started

    def tick() -> None:
        nonlocal reported, next_report
        now = time.perf_counter()
        stats.elapsed_s = now - started
        if on_batch is not None and stats.position > reported:
            on_batch(stats.position - reported)
            reported = stats.position
        if on_progress is not None and now >= next_report:
            on_progress(stats)
            next_report = now + 0.5

    try:
        with _short_gil_switches:
            for thread in threads:
                thread.start()
            encode_stage(tick)
            while any(t.is_alive() for t in threads):
                time.sleep(0.1)
                tick()
    finally:
        if restore is not None:
            restore()
    stats.elapsed_s = time.perf_counter() - started
    stats.interrupted = run.stop.is_set() and run.error is None
    try:
        if run.error is None and not stats.interrupted:
            try:
                run.check_fraction()
            except DeadLetterLimitError as e:
                run.error = e
            else:
                checkpoint.done = True
        run.save()
    finally:
        if dead_letter is not None:
            dead_letter.close()
    if on_batch is not None and stats.position > reported:
        on_batch(stats.position - reported)
    if on_progress is not None:
        on_progress(stats)
    if run.error is not None:
        raise run.error
    if stats.read == 0 and checkpoint.position == 0:
        raise InputError("no documents")
    logger.info("run %d: %s", checkpoint.run_number, stats.summary())
    return stats


def _describe(backend: Backend) -> str:
    target = getattr(backend, "target", None)
    where = getattr(target, "index", None) or getattr(target, "collection", None) or ""
    return f"{backend.name}:{where}"


def _open_run(
    run_dir: Path | None, resume: bool, run_number: int | None, source: str, target: str
) -> tuple[Checkpoint, DeadLetterFile | None]:
    previous = Checkpoint.load(run_dir) if run_dir is not None else None
    if resume:
        if run_dir is None:
            raise ValueError("resume needs a run directory")
        if previous is None:
            raise InputError(f"no checkpoint to resume in {run_dir}")
        if run_number is not None and run_number != previous.run_number:
            raise ValueError(f"the run to resume has run number {previous.run_number}, not {run_number}")
        for what, old, new in (("input", previous.source, source), ("target", previous.target, target)):
            if old and new and old != new:
                raise InputError(f"the run in {run_dir} was for {what} {old!r}, not {new!r}")
        logger.info("resuming run %d at item %d", previous.run_number, previous.position)
        letters = DeadLetterFile(run_dir / DEAD_LETTER_NAME, truncate_at=previous.dead_letter_bytes)
        return previous, letters
    if run_number is None:
        run_number = max(int(time.time() * 1000), previous.run_number + 1 if previous else 1)
    checkpoint = Checkpoint(run_number, source=source, target=target)
    if run_dir is None:
        return checkpoint, None
    letters = DeadLetterFile(run_dir / DEAD_LETTER_NAME)
    checkpoint.save(run_dir)
    return checkpoint, letters


def _token_limit(encoder: Encoder) -> tuple[Any, int] | None:
    """A private copy of the tokenizer (fast tokenizers are not shareable across threads) and the limit."""
    try:
        model: Any = encoder.model
        limit = int(model.max_seq_length)
        return copy.deepcopy(model.tokenizer), limit
    except Exception:  # a model without one tokenizer/limit: truncation is not counted
        return None


def _batches(
    source: ItemSource, batch_size: int, start: int, limit: tuple[Any, int] | None, run: _Run
) -> Iterator[_Batch]:
    first_position: dict[str, int] = {}
    batch = _Batch(seq=0, end=start)
    seq = 0
    for position, item in enumerate(source.items()):
        if isinstance(item, Document):
            first = first_position.setdefault(item.id, position)
            if first != position:
                item = BadInput("duplicate_id", f"duplicate id {item.id!r} (first at item {first})", item.id)
        if position < start:
            continue
        if run.stop.is_set() or run.abort.is_set():
            break
        run.stats.read += 1
        if isinstance(item, BadInput):
            where = f"{item.source}:{item.line}: " if item.line is not None else ""
            batch.letters.append(DeadLetter(position, item.id, None, item.type, where + item.reason))
        else:
            batch.docs.append((position, item))
            if limit is not None and _too_long(item.text, limit):
                batch.truncated += 1
        batch.end = position + 1
        batch.size += 1
        if batch.size >= batch_size:
            yield batch
            seq += 1
            batch = _Batch(seq=seq, end=batch.end)
    if batch.docs or batch.letters:
        yield batch


def _too_long(text: str, limit: tuple[Any, int]) -> bool:
    tokenizer, max_tokens = limit
    if len(text.encode("utf-8")) + 2 <= max_tokens:  # a token covers at least one byte
        return False
    return len(tokenizer(text, truncation=False, verbose=False)["input_ids"]) > max_tokens


def _encode(
    batch: _Batch,
    encoder: Encoder,
    dense_encoder: DenseEncoder | None,
    top_k: int | None,
    min_weight: float,
    run_number: int,
) -> None:
    if not batch.docs:
        return
    texts = [d.text for _, d in batch.docs]
    vectors = encoder.encode_documents(texts, top_k=top_k, min_weight=min_weight)
    dense = dense_encoder.encode_documents(texts) if dense_encoder is not None else [None] * len(texts)
    for (position, document), vector, embedding in zip(batch.docs, vectors, dense, strict=True):
        if len(vector) == 0:
            batch.letters.append(
                DeadLetter(
                    position,
                    document.id,
                    None,
                    "empty_vector",
                    f"empty vector: no term weight above {min_weight}",
                )
            )
        else:
            batch.records.append(Record(document, vector, embedding, version=run_number))


def _write(batch: _Batch, backend: Backend) -> WriteStats:
    if not batch.records:
        return WriteStats()
    try:
        return backend.write(batch.records)
    except BulkWriteError as e:
        positions = {p: d.id for p, d in batch.docs}
        by_id = {doc_id: p for p, doc_id in positions.items()}
        for failure in e.failures:
            batch.letters.append(
                DeadLetter(
                    by_id.get(failure.id, -1), failure.id, failure.status, failure.type, failure.reason
                )
            )
        done = e.stats if e.stats is not None else WriteStats()
        if e.stats is None:
            done.written = len(batch.records) - len(e.failures)
        return done


def _install_signals(run: _Run) -> Callable[[], None] | None:
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        if run.stop.is_set():  # a second signal: stop hard
            raise KeyboardInterrupt
        logger.warning("signal %d: finishing the batches in flight, then writing the checkpoint", signum)
        run.stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore
