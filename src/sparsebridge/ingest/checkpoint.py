"""The run directory of an ingest: its checkpoint and its dead-letter file.

``RUN_DIR/checkpoint.json`` says how far a run got: ``position`` is the number of input items
(in input order, bad rows included) that are done, meaning every one of them was either
acknowledged by the engine, refused as stale (a newer version is there), or written to the
dead-letter file. It is written (atomically: temporary file, fsync, rename) only after that was
true, so a resumed run that skips ``position`` items loses nothing. Items after ``position`` may
already be in the engine too; rewriting them is idempotent (the same ids, the same run number).

``RUN_DIR/dead_letter.jsonl`` holds one JSON object per item that will never be written:
``{"position", "id", "status", "type", "reason"}`` (``status`` is the engine's HTTP status, or
null for bad input). ``dead_letter_bytes`` in the checkpoint is its length at that point: a resume
truncates it there, so no record appears twice.

A checkpoint names what it is about, and a resume must match both: ``target`` is the full
identity of where the run writes (:func:`target_identity`: scheme, ``host:port`` or the resolved
storage directory, collection or index; :func:`same_target` compares two), ``input`` a
fingerprint of the input file (:class:`InputFingerprint`: size, modification time, a hash of its
first and last MiB). Resuming into another place would skip documents that place never received;
resuming over an input that changed at the same path would skip or repeat whatever moved.

``RUN_DIR/lock`` is held (``fcntl.flock``, exclusive) by the one process that runs in the directory
(:class:`RunDirLock`) and holds its pid; the OS releases it when that process ends, killed or not.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any

from sparsebridge.backends.base import Located
from sparsebridge.backends.targets import parse_target
from sparsebridge.errors import InputError
from sparsebridge.ingest.sink import Sink

__all__ = [
    "CHECKPOINT_NAME",
    "DEAD_LETTER_NAME",
    "LOCK_NAME",
    "Checkpoint",
    "DeadLetter",
    "DeadLetterFile",
    "InputFingerprint",
    "RunDirLock",
    "same_target",
    "target_identity",
]

CHECKPOINT_NAME = "checkpoint.json"
DEAD_LETTER_NAME = "dead_letter.jsonl"
LOCK_NAME = "lock"


class RunDirLock:
    """One process at a time in a run directory: ``with RunDirLock(run_dir): ...``.

    Entering creates the directory if needed and takes an exclusive ``flock`` on ``RUN_DIR/lock``
    without waiting. A directory that cannot be written, or that another process holds, raises
    :class:`InputError` saying which (with the holder's pid). The OS releases the lock when the
    holder exits or is killed, so a crashed run never leaves the directory locked.
    """

    def __init__(self, run_dir: Path) -> None:
        """Prepare a lock on ``run_dir``; nothing happens until the ``with`` block is entered."""
        self.run_dir = run_dir
        self._handle: IO[str] | None = None

    def __enter__(self) -> RunDirLock:
        """Take the lock, or raise :class:`InputError`."""
        where = str(self.run_dir)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            handle = (self.run_dir / LOCK_NAME).open("a+", encoding="utf-8")
        except OSError as e:
            raise InputError(f"cannot write the run directory: {e.strerror}", source=where) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            by = f" (pid {holder})" if holder else ""
            raise InputError(f"another run is using this run directory{by}", source=where) from None
        try:
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        except OSError as e:
            handle.close()
            raise InputError(f"cannot write the run directory: {e.strerror}", source=where) from None
        self._handle = handle
        return self

    def __exit__(self, *_: object) -> None:
        """Release the lock."""
        if self._handle is not None:
            self._handle.close()  # closing the descriptor releases the flock
            self._handle = None


@dataclass
class Checkpoint:
    """How far a run got (see the module docstring); ``done`` once the whole input was handled."""

    run_number: int
    position: int = 0
    written: int = 0
    stale: int = 0
    dead_lettered: int = 0
    truncated: int = 0
    dead_letter_bytes: int = 0
    source: str = ""
    target: str = ""
    input: dict[str, Any] = field(default_factory=dict)
    done: bool = False

    @classmethod
    def load(cls, run_dir: Path) -> Checkpoint | None:
        """The checkpoint in ``run_dir``, or None if there is none."""
        path = run_dir / CHECKPOINT_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise InputError(f"unreadable checkpoint: {e}", source=str(path)) from None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, run_dir: Path) -> None:
        """Write atomically: a crash leaves the previous checkpoint or this one, never half of one."""
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / CHECKPOINT_NAME
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            json.dump(asdict(self), out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
        _fsync_dir(run_dir)


@dataclass(frozen=True)
class InputFingerprint:
    """What identifies an input file's content cheaply: size, modification time (ns), and a BLAKE2b
    hash of its first and last :attr:`BLOCK` bytes (the whole file when it is smaller)."""

    size: int
    mtime_ns: int
    head_tail_blake2b: str

    BLOCK = 1 << 20

    @classmethod
    def of(cls, path: Path) -> InputFingerprint:
        """Fingerprint the file at ``path``.

        Raises:
            InputError: The file cannot be read.
        """
        try:
            with path.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                mtime_ns = os.fstat(handle.fileno()).st_mtime_ns
                digest = hashlib.blake2b(handle.read(cls.BLOCK), digest_size=16)
                if size > cls.BLOCK:
                    handle.seek(max(cls.BLOCK, size - cls.BLOCK))
                    digest.update(handle.read(cls.BLOCK))
        except OSError as e:
            raise InputError(f"cannot read the input file: {e.strerror}", source=str(path)) from None
        return cls(size, mtime_ns, digest.hexdigest())

    def to_json(self) -> dict[str, Any]:
        """As stored in the checkpoint."""
        return {"size": self.size, "mtime_ns": self.mtime_ns, "head_tail_blake2b": self.head_tail_blake2b}

    def changes(self, recorded: dict[str, Any]) -> list[str]:
        """How this file differs from the ``recorded`` fingerprint (empty: the same)."""
        changes = []
        if recorded.get("size") != self.size:
            changes.append(f"size {recorded.get('size')} -> {self.size} bytes")
        if recorded.get("mtime_ns") != self.mtime_ns:
            changes.append("modification time")
        if recorded.get("head_tail_blake2b") != self.head_tail_blake2b:
            changes.append("content")
        return changes


def target_identity(backend: Sink) -> str:
    """Where ``backend`` writes, in full: the identity of its ``location`` (:meth:`Target.identity`).

    That is the scheme, ``host:port`` of a server (the port made explicit) or the resolved storage
    directory of an embedded store, and the collection or index: two targets with the same
    identity hold the same documents, and a relative directory names the same place from anywhere.
    A sink that keeps no location (one written outside this package) is named by its engine
    only, ``NAME:``.

    Example:
        >>> from sparsebridge.backends import QdrantBackend, QdrantTarget
        >>> target_identity(QdrantBackend(QdrantTarget("docs", url="http://localhost")))
        'qdrant://localhost:6333/docs'
    """
    return backend.location.identity() if isinstance(backend, Located) else f"{backend.name}:"


def same_target(recorded: str, identity: str) -> bool:
    """Whether a checkpoint's ``recorded`` target is the target of ``identity`` (:func:`target_identity`).

    A checkpoint may also hold a target as ``ENGINE:LOCATION/NAME`` (``qdrant:/data/q/docs``,
    ``opensearch:http://host:9200/docs``): that form names the same target too.
    """
    return recorded == identity or recorded == _engine_form(identity)


def _engine_form(identity: str) -> str | None:
    """``identity`` as ``ENGINE:LOCATION/NAME`` (None where it does not parse)."""
    try:
        target = parse_target(identity)
    except ValueError:
        return None
    if target.name is None:  # memory://: nothing outlives the process to compare
        return f"{target.engine.value}:"
    location = os.path.realpath(target.path) if target.path is not None else target.url
    return f"{target.engine.value}:{location}/{target.name or ''}"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass(frozen=True)
class DeadLetter:
    """One item that will not be written: where it was, its id, and why."""

    position: int
    id: str | None
    status: int | None
    type: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        """The record as written to the dead-letter file."""
        return asdict(self)


class DeadLetterFile:
    """Append-only JSON Lines of :class:`DeadLetter` records, fsynced before each checkpoint."""

    def __init__(self, path: Path, *, truncate_at: int | None = None) -> None:
        """Open ``path`` for appending; ``truncate_at`` cuts it first (a resume), else it starts empty."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        if truncate_at is None:
            self._handle: IO[str] = path.open("w", encoding="utf-8")
        else:
            with path.open("a", encoding="utf-8"):
                pass
            os.truncate(path, truncate_at)
            self._handle = path.open("a", encoding="utf-8")

    def write(self, letter: DeadLetter) -> None:
        """Append one record (buffered until :meth:`sync`)."""
        self._handle.write(json.dumps(letter.to_json(), ensure_ascii=False) + "\n")

    def clear(self) -> None:
        """Empty the file (its records are about to be written again)."""
        self._handle.flush()
        self._handle.seek(0)
        self._handle.truncate(0)

    def sync(self) -> int:
        """Flush and fsync; returns the file's length in bytes."""
        self._handle.flush()
        os.fsync(self._handle.fileno())
        return self._handle.tell()

    def close(self) -> None:
        """Flush and close."""
        if not self._handle.closed:
            self.sync()
            self._handle.close()
