"""Which model wrote a collection or index: recorded with it, checked before every ingest and search.

Sparse vectors are only comparable when they come from the same model: another vocabulary maps
the same dimension to another token, and another model weighs tokens differently, so a search or
an ingest with another model returns meaningless scores without any error. The first ingest
records a :class:`ModelIdentity` with the target (Qdrant: the collection's metadata; OpenSearch
and Elasticsearch: the mapping's ``_meta``; the in-memory reference: the object), under the key
:data:`MODEL_KEY`; every later ingest and search compares its own model with it and raises
:class:`~sparsebridge.errors.SchemaMismatchError` naming both, unless the mismatch is allowed
explicitly. A target that records nothing (written before identities were recorded, or by
another tool) is not checked; an ingest then records its model.

A model loaded from a directory is also known by the SHA-256 of every byte of its files
(:func:`content_sha256`), so a change to any weight is seen. Hashing a large model takes a while,
so each file's digest is cached by its resolved path, size, modification time, change time and
inode, in memory and in ``$SPARSEBRIDGE_CACHE/file-sha256/`` (default
``~/.cache/sparsebridge``; one small file per entry; a cache that cannot be written is skipped):
after the first open, an open costs one ``stat`` per file. The change time is part of the key
because it cannot be set back by hand, as a modification time can (``touch``). Identities
recorded with only the sampled fingerprint (:func:`files_sha256`) are compared by it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sparsebridge.errors import SchemaMismatchError

__all__ = [
    "MODEL_KEY",
    "ModelIdentity",
    "SupportsModelIdentity",
    "check_model",
    "content_sha256",
    "files_sha256",
]

logger = logging.getLogger(__name__)

MODEL_KEY = "sparsebridge_model"


@dataclass(frozen=True)
class ModelIdentity:
    """A model's name (or resolved local path), its vocabulary size and the SHA-256 of its vocabulary;
    for a model loaded from a directory, also the SHA-256 of its files' bytes (:func:`content_sha256`)
    and their sampled fingerprint (:func:`files_sha256`, which identities recorded without the
    former carry).

    Two identities match (:meth:`matches`) when their vocabularies are the same and, where both
    have a content digest, the digests are the same (the same files at another path, or on another
    node, are the same model); else, where both have a sampled fingerprint, the fingerprints are
    the same; otherwise when their names are the same.

    Example:
        >>> str(ModelIdentity("naver/splade-v3", 30522, "ab" * 32))
        'naver/splade-v3 (vocabulary of 30522 tokens, sha256 abababababab...)'
    """

    model: str
    vocab_size: int
    vocab_sha256: str
    files_sha256: str | None = None
    content_sha256: str | None = None

    @classmethod
    def of(cls, encoder: Any) -> ModelIdentity | None:
        """The identity of a sparse encoder (its ``model_name`` and ``vocab``, index -> token).

        None for a stand-in without them (a benchmark's pre-encoded vectors): nothing to check.
        """
        if not (hasattr(encoder, "model_name") and hasattr(encoder, "vocab")):
            return None
        name = str(encoder.model_name)
        files = content = None
        if os.path.isdir(name):
            name = os.path.realpath(name)
            files, content = files_sha256(name), content_sha256(name)
        vocab = list(encoder.vocab)
        digest = hashlib.sha256("\n".join(vocab).encode("utf-8")).hexdigest()
        return cls(name, len(vocab), digest, files, content)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelIdentity:
        """Read a recorded identity (missing fields read as unknown, so they never match)."""
        files, content = data.get("files_sha256"), data.get("content_sha256")
        return cls(
            str(data.get("model", "?")),
            int(data.get("vocab_size", -1)),
            str(data.get("vocab_sha256", "")),
            None if files is None else str(files),
            None if content is None else str(content),
        )

    def to_json(self) -> dict[str, Any]:
        """As recorded with the target."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def matches(self, other: ModelIdentity) -> bool:
        """Whether vectors of ``other`` and of this model are comparable (see the class)."""
        if (self.vocab_size, self.vocab_sha256) != (other.vocab_size, other.vocab_sha256):
            return False
        if self.content_sha256 is not None and other.content_sha256 is not None:
            return self.content_sha256 == other.content_sha256
        if self.files_sha256 is not None and other.files_sha256 is not None:
            return self.files_sha256 == other.files_sha256
        return self.model == other.model

    def __str__(self) -> str:
        files = "" if self.files_sha256 is None else f", files sha256 {self.files_sha256[:12]}..."
        if self.content_sha256 is not None:
            files += f", content sha256 {self.content_sha256[:12]}..."
        return (
            f"{self.model} (vocabulary of {self.vocab_size} tokens, "
            f"sha256 {self.vocab_sha256[:12]}...{files})"
        )


_SAMPLE = 1 << 20


def _model_files(root: Path) -> list[tuple[str, Path]]:
    """A model directory's files, sorted by relative path; markdown (model cards) and hidden paths
    are left out: they do not change the vectors."""
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        if path.suffix == ".md" or any(part.startswith(".") for part in relative.parts):
            continue
        files.append((relative.as_posix(), path))
    return files


def content_sha256(directory: str) -> str:
    """SHA-256 over a model directory's files: each one's relative path, size and the SHA-256 of
    all its bytes (cached: see the module docstring). Files as :func:`files_sha256` chooses them.
    """
    digest = hashlib.sha256()
    for relative, path in _model_files(Path(directory)):
        size, file_digest = _file_sha256(path)
        digest.update(f"{relative}\0{size}\0{file_digest}\0".encode())
    return digest.hexdigest()


def files_sha256(directory: str) -> str:
    """SHA-256 over a model directory's files: each one's relative path, size and bytes (of a file
    over 3 MiB, its first, middle and last MiB only: a change elsewhere goes unseen, which
    :func:`content_sha256` sees).

    Markdown (model cards) and hidden paths are left out: they do not change the vectors.
    """
    digest = hashlib.sha256()
    for relative, path in _model_files(Path(directory)):
        size = path.stat().st_size
        digest.update(f"{relative}\0{size}\0".encode())
        with path.open("rb") as handle:
            if size <= 3 * _SAMPLE:
                digest.update(handle.read())
                continue
            for offset in (0, (size - _SAMPLE) // 2, size - _SAMPLE):
                handle.seek(offset)
                digest.update(handle.read(_SAMPLE))
    return digest.hexdigest()


_CACHED = 1 << 20  # smaller files are hashed on every open: cheaper than a cache entry
_digests: dict[tuple[str, int, int, int, int, int], str] = {}
_digests_lock = threading.Lock()


def _cache_dir() -> Path:
    base = os.environ.get("SPARSEBRIDGE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sparsebridge"
    )
    return Path(base) / "file-sha256"


def _file_sha256(path: Path) -> tuple[int, str]:
    """(size, SHA-256 of every byte) of a file; cached by path, size, mtime, ctime and inode."""
    real = os.path.realpath(path)
    st = os.stat(real)
    if st.st_size < _CACHED:
        return st.st_size, _hash_file(real)
    key = (real, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
    with _digests_lock:
        known = _digests.get(key)
    if known is not None:
        return st.st_size, known
    name = hashlib.sha256(json.dumps(key).encode()).hexdigest()
    entry = _cache_dir() / name
    try:
        recorded = json.loads(entry.read_text())
        if recorded.get("key") == list(key) and isinstance(recorded.get("sha256"), str):
            known = recorded["sha256"]
    except (OSError, ValueError, AttributeError):
        known = None
    if known is None:
        known = _hash_file(real)
        _write_entry(entry, {"key": list(key), "sha256": known})
    with _digests_lock:
        _digests[key] = known
    return st.st_size, known


def _hash_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _write_entry(entry: Path, data: dict[str, Any]) -> None:
    """Write a cache entry atomically (a concurrent writer writes the same); skip if we cannot."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle)
            os.replace(tmp, entry)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        logger.debug("file digest cache %s not written: %s", entry.parent, e)


@runtime_checkable
class SupportsModelIdentity(Protocol):
    """A backend that records which model wrote its collection or index."""

    name: str

    def stored_model(self) -> dict[str, Any] | None:
        """The recorded identity (:meth:`ModelIdentity.to_json`), or None: none, or no such target."""
        ...

    def store_model(self, identity: Mapping[str, Any]) -> None:
        """Record ``identity`` with the collection or index (which exists: after ``ensure_schema``)."""
        ...


def check_model(
    backend: Any, identity: ModelIdentity | None, *, record: bool, allow_mismatch: bool = False
) -> None:
    """Refuse a target written by another model; with ``record``, record ``identity`` where none is.

    ``record`` is for ingest (after ``ensure_schema``); a search only reads. A backend that cannot
    record an identity, or an encoder without one (``identity`` None), is not checked.

    Raises:
        SchemaMismatchError: The target records another model (names both), unless ``allow_mismatch``.
    """
    if identity is None:
        return
    if not isinstance(backend, SupportsModelIdentity):
        logger.debug("%s records no model identity: not checked", getattr(backend, "name", backend))
        return
    stored = backend.stored_model()
    if stored is None:
        if record:
            backend.store_model(identity.to_json())
        return
    recorded = ModelIdentity.from_json(stored)
    if recorded.matches(identity):
        return
    message = f"the target was written with model {recorded}, not with {identity}"
    if allow_mismatch:
        logger.warning("%s: %s (allowed)", backend.name, message)
        return
    raise SchemaMismatchError(
        f"{message}: its vectors and these are not comparable; use that model, or allow the "
        "mismatch explicitly (--allow-model-mismatch, allow_model_mismatch=True)",
        backend=backend.name,
    )
