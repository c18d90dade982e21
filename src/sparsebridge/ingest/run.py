"""One ingest run, whichever engine runs it: its stats, its run directory, its counters.

::

    Run.open(options)    lock the run dir, open (or resume) its checkpoint and dead-letter file
    Run.count(...)       the one place a run's counters change: items done, written, stale,
                         truncated, retried, dead-lettered (the record goes to the dead-letter file)
    Run.save()           fsync the dead-letter file, then write the checkpoint
    Run.finish(...)      the final dead-letter fraction check, ``done``, the last checkpoint

The threaded pipeline (:mod:`sparsebridge.ingest.pipeline`) finishes batches in any order and hands
them to a :class:`Tracker`, which counts them into the run in input order. The Ray engine
(:mod:`sparsebridge.ingest.ray`) keeps a journal while it runs and counts the journal into the run at
the end. What the files hold is described in :mod:`sparsebridge.ingest.checkpoint`.

The CLI names a run directory after its input and target (:func:`run_dir_for`) and, after a run
that completed, compacts a target that supports it (:func:`optimize_target`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sparsebridge.backends.base import SupportsOptimize
from sparsebridge.errors import DeadLetterLimitError, InputError
from sparsebridge.ingest.checkpoint import (
    DEAD_LETTER_NAME,
    Checkpoint,
    DeadLetter,
    DeadLetterFile,
    InputFingerprint,
    RunDirLock,
    same_target,
)
from sparsebridge.ingest.options import RunOptions
from sparsebridge.ingest.stages import Batch
from sparsebridge.types import WriteStats

__all__ = ["IngestStats", "Optimized", "Run", "Tally", "Tracker", "optimize_target", "run_dir_for"]

logger = logging.getLogger(__name__)

RUNS_DIR = Path(".sparsebridge") / "runs"
"""Where :func:`run_dir_for` puts run directories (relative to the working directory)."""

_MIN_ITEMS_FOR_FRACTION = 1000
_KEPT_DEAD_LETTERS = 1000


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


@dataclass(frozen=True)
class Tally:
    """Counters of items finished together: a batch, or one session of a Ray journal."""

    read: int = 0
    written: int = 0
    stale: int = 0
    truncated: int = 0
    retries: int = 0
    batches: int = 0

    @classmethod
    def of(cls, batch: Batch, written: WriteStats) -> Tally:
        """The counters of a batch the writer finished (retries are counted when they happen)."""
        return cls(written=written.written, stale=written.stale, truncated=batch.truncated, batches=1)


class Run:
    """The state of one run: its checkpoint, its dead-letter file and its :class:`IngestStats`.

    Made by :meth:`open`. Not thread-safe: the :class:`Tracker` serialises the threaded pipeline's
    calls; the Ray driver calls it from one thread.
    """

    def __init__(
        self, options: RunOptions, checkpoint: Checkpoint, dead_letter: DeadLetterFile | None, writers: int
    ) -> None:
        self.options = options
        self.checkpoint = checkpoint
        self.dead_letter = dead_letter
        self.stats = IngestStats(
            run_number=checkpoint.run_number,
            writers=writers,
            skipped=checkpoint.position,
            position=checkpoint.position,
        )
        self._reasons: Counter[str] = Counter()

    @classmethod
    @contextlib.contextmanager
    def open(cls, options: RunOptions, *, source: str, target: str, writers: int) -> Iterator[Run]:
        """Lock the run directory and open its run: a new one, or the one to resume.

        ``source`` names the input file (empty: an iterable), ``target`` where the run writes
        (:func:`~sparsebridge.ingest.checkpoint.target_identity`); a resume must match both.

        Raises:
            InputError: Another run holds the run directory, it cannot be written, there is nothing
                to resume, or the run in it was for another input or target.
            ValueError: Another run number than the run to resume has.
        """
        with RunDirLock(options.run_dir) if options.run_dir is not None else contextlib.nullcontext():
            checkpoint, dead_letter = _open_checkpoint(options, source, target)
            run = cls(options, checkpoint, dead_letter, writers)
            try:
                yield run
            finally:
                run.close()

    @property
    def done(self) -> bool:
        """Whether the whole input was handled (a finished run has nothing left to do)."""
        return self.checkpoint.done

    def count(
        self,
        tally: Tally,
        letters: Iterable[DeadLetter] = (),
        *,
        position: int | None = None,
        this_run: bool = True,
    ) -> None:
        """Count finished items: the checkpoint always, the stats when they are ``this_run``'s work.

        ``letters`` are written to the dead-letter file in the order given; ``position`` (None:
        unchanged) is how many input items are done.
        """
        cp, stats = self.checkpoint, self.stats
        cp.written += tally.written
        cp.stale += tally.stale
        cp.truncated += tally.truncated
        if this_run:
            stats.read += tally.read
            stats.written += tally.written
            stats.stale += tally.stale
            stats.truncated += tally.truncated
            stats.retries += tally.retries
            stats.batches += tally.batches
        for letter in letters:
            cp.dead_lettered += 1
            self._reasons[letter.type] += 1
            if self.dead_letter is not None:
                self.dead_letter.write(letter)
            stats.dead_lettered += 1
            if len(stats.dead_letters) < _KEPT_DEAD_LETTERS:
                stats.dead_letters.append(letter)
        if position is not None:
            cp.position = stats.position = position

    def restart(self, *, skipped: int) -> None:
        """Count from zero: every counter, the position and the dead-letter file (the Ray engine,
        whose journal holds every item done, counts the journal in again at the end)."""
        cp = self.checkpoint
        cp.position = cp.written = cp.stale = cp.truncated = cp.dead_lettered = cp.dead_letter_bytes = 0
        self.stats = IngestStats(run_number=cp.run_number, writers=self.stats.writers, skipped=skipped)
        self._reasons.clear()
        if self.dead_letter is not None:
            self.dead_letter.clear()

    def save(self) -> None:
        """Fsync the dead-letter file, then write the checkpoint (when there is a run directory)."""
        if self.dead_letter is not None:
            self.checkpoint.dead_letter_bytes = self.dead_letter.sync()
        if self.options.run_dir is not None:
            self.checkpoint.save(self.options.run_dir)

    def check_fraction(self, *, final: bool) -> None:
        """Raise :class:`DeadLetterLimitError` if more than the allowed fraction was dead-lettered.

        Before the end (``final`` False) only from 1,000 items on: a few bad items at the start
        of an input say little about the rest.
        """
        cp, limit = self.checkpoint, self.options.max_dead_letter_fraction
        if not final and cp.position < _MIN_ITEMS_FOR_FRACTION:
            return
        if cp.position and cp.dead_lettered > limit * cp.position:
            reasons = ", ".join(f"{k.replace('_', ' ')}: {n}" for k, n in self._reasons.most_common())
            where = f"; the records are in {self.dead_letter.path}" if self.dead_letter is not None else ""
            raise DeadLetterLimitError(
                f"{cp.dead_lettered} of {cp.position} items were dead-lettered ({reasons}), more than "
                f"the allowed fraction {limit}; the run stopped (checkpoint at {cp.position}, "
                f"{cp.written} written{where})"
            )

    def finish(
        self, error: BaseException | None, *, elapsed_s: float, interrupted: bool = False
    ) -> IngestStats:
        """Close the run: the final fraction check, ``done``, the last checkpoint; raise the run's error.

        Raises:
            BaseException: ``error``, or :class:`DeadLetterLimitError` from the final check.
            InputError: The input held no items.
        """
        stats, checkpoint = self.stats, self.checkpoint
        stats.elapsed_s = elapsed_s
        stats.interrupted = interrupted and error is None
        try:
            if error is None and not stats.interrupted:
                try:
                    self.check_fraction(final=True)
                except DeadLetterLimitError as e:
                    error = e
                else:
                    checkpoint.done = True
            self.save()
        finally:
            self.close()
        if error is not None:
            raise error
        if stats.read == 0 and checkpoint.position == 0:
            raise InputError("no documents")
        logger.info("run %d: %s", checkpoint.run_number, stats.summary())
        return stats

    def close(self) -> None:
        """Close the dead-letter file (flushed and fsynced)."""
        if self.dead_letter is not None:
            self.dead_letter.close()


def _open_checkpoint(
    options: RunOptions, source: str, target: str
) -> tuple[Checkpoint, DeadLetterFile | None]:
    """The checkpoint and dead-letter file of a new run, or of the run to resume, in the run dir."""
    run_dir = options.run_dir
    previous = Checkpoint.load(run_dir) if run_dir is not None else None
    if options.resume:
        assert run_dir is not None  # RunOptions refuses resume without a run dir
        if previous is None:
            raise InputError(f"no checkpoint to resume in {run_dir}")
        if options.run_number is not None and options.run_number != previous.run_number:
            raise ValueError(
                f"the run to resume has run number {previous.run_number}, not {options.run_number}"
            )
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
    run_number = options.run_number
    if run_number is None:
        run_number = max(int(time.time() * 1000), previous.run_number + 1 if previous else 1)
    fingerprint = InputFingerprint.of(Path(source)).to_json() if source else {}
    checkpoint = Checkpoint(run_number, source=source, target=target, input=fingerprint)
    if run_dir is None:
        return checkpoint, None
    letters = DeadLetterFile(run_dir / DEAD_LETTER_NAME)
    checkpoint.save(run_dir)
    return checkpoint, letters


class Tracker:
    """Counts the threaded pipeline's batches into a :class:`Run` in input order.

    Writers finish batches in any order; the checkpoint advances to the end of the longest run of
    finished batches from the start (see :mod:`sparsebridge.ingest.checkpoint`), saved after each
    advance. Safe to call from many threads; ``lock`` guards the run's stats too.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.lock = threading.Lock()
        self._next_seq = 0
        self._completed: dict[int, tuple[Batch, WriteStats]] = {}

    @property
    def stats(self) -> IngestStats:
        """The run's live stats (read them under ``lock`` for a consistent view)."""
        return self.run.stats

    def read(self, batch: Batch) -> None:
        """A batch was read: it is in flight until a writer finishes it."""
        with self.lock:
            self.run.count(Tally(read=batch.size))
            self.run.stats.in_flight += batch.size

    def busy(self, *, encode_s: float = 0.0, write_s: float = 0.0) -> None:
        """Time the encoder or a writer spent working."""
        with self.lock:
            self.run.stats.encode_busy_s += encode_s
            self.run.stats.write_busy_s += write_s

    def complete(self, batch: Batch, written: WriteStats) -> None:
        """Record a finished batch; count every contiguous finished batch into the run, then save.

        Raises:
            DeadLetterLimitError: Too many items dead-lettered so far (from 1,000 items on).
        """
        batch.docs, batch.records = [], []  # done: keep only the counts and the dead letters
        with self.lock:
            self.run.count(Tally(retries=written.retries))
            self.run.stats.in_flight -= batch.size
            self._completed[batch.seq] = (batch, written)
            if self._next_seq not in self._completed:
                return
            while self._next_seq in self._completed:
                done, ws = self._completed.pop(self._next_seq)
                self._next_seq += 1
                letters = sorted(done.letters, key=lambda d: d.position)
                self.run.count(Tally.of(done, ws), letters, position=done.end)
            self.run.save()
            self.run.check_fraction(final=False)


def run_dir_for(input_path: Path, target: str) -> Path:
    """The run directory of an input and a target: ``.sparsebridge/runs/<input stem>-<hash>``.

    The hash covers the input's resolved path and the target URI, so the same command run again
    finds its checkpoint, and another input or target gets a directory of its own.
    """
    key = hashlib.sha1(f"{input_path.resolve()}\n{target}".encode()).hexdigest()[:10]
    return RUNS_DIR / f"{input_path.stem}-{key}"


@dataclass(frozen=True)
class Optimized:
    """What :func:`optimize_target` did: whether any segment changed, and how long it took."""

    changed: bool
    seconds: float

    def summary(self) -> str:
        """One line for people."""
        if self.changed:
            return f"optimized the shard's segments in {self.seconds:.1f} s"
        return f"the shard's segments were already optimal (checked in {self.seconds:.1f} s)"


def optimize_target(backend: object) -> Optimized | None:
    """Compact a target after a completed run, where it supports that (:class:`SupportsOptimize`).

    Qdrant Edge rebuilds appendable segments in memory on every open of the shard; optimized ones
    open at once. Other targets: nothing to do (None).
    """
    if not isinstance(backend, SupportsOptimize):
        return None
    started = time.perf_counter()
    changed = backend.optimize()
    return Optimized(changed, time.perf_counter() - started)
