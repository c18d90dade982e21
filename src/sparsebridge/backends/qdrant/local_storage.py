"""Durable, fast writes into qdrant-client's local mode: the one place that reaches into its internals.

Local mode keeps a collection's points in a sqlite file and commits every point on its own. Left
as qdrant-client opens it (rollback journal, ``synchronous=FULL``) each point costs several
fsyncs, which makes the storage, not Qdrant, the cost of a write. :class:`DeferredSync` switches
that database to WAL with ``synchronous=NORMAL`` (a point's commit appends to the log, no fsync)
and ends every change with a checkpoint that syncs the log and the database file before it
returns: an acknowledged write is on disk, at a few fsyncs per call instead of per point.

The connection is found at ``client._client.collections[name].storage.storage``, a private layout
of qdrant-client: :func:`local_storage` checks each step and gives None where it differs (writes
then keep qdrant-client's own per-point commits, correct and slower). tests/integration/
test_qdrant_local_storage.py fails when the installed qdrant-client no longer has this layout.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from sparsebridge.errors import BackendError

__all__ = ["DeferredSync", "checkpoint", "defer_sync", "local_storage"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


def local_storage(client: Any, collection: str) -> sqlite3.Connection | None:
    """The sqlite connection local mode persists ``collection`` in, or None (see the module docstring)."""
    collections = getattr(getattr(client, "_client", None), "collections", None)
    if not isinstance(collections, dict):
        return None
    storage = getattr(getattr(collections.get(collection), "storage", None), "storage", None)
    return storage if isinstance(storage, sqlite3.Connection) else None


def defer_sync(storage: sqlite3.Connection) -> bool:
    """Let each point's commit skip its fsync (:func:`checkpoint` makes a call durable); False if not WAL."""
    [mode] = storage.execute("PRAGMA journal_mode=WAL").fetchone()
    if str(mode).lower() != "wal":
        return False
    storage.execute("PRAGMA synchronous=NORMAL")
    return True


def checkpoint(storage: sqlite3.Connection) -> None:
    """Sync the log, copy it into the database file, sync that and empty the log.

    Raises:
        BackendError: The checkpoint did not copy every frame (the change is applied, not known durable).
    """
    busy, frames, copied = storage.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy or copied != frames:
        raise BackendError(
            f"embedded Qdrant's storage checkpoint did not complete ({copied} of {frames} frames): "
            "the write is applied but not known to be on disk",
            backend="qdrant",
        )


class DeferredSync:
    """Runs local-mode changes with per-point fsyncs deferred and one sync at the end of each.

    Not thread-safe: the caller runs one change at a time (local mode allows one writer anyway).
    """

    def __init__(self) -> None:
        self._deferred: sqlite3.Connection | None = None  # the storage whose commits skip fsync

    def run(self, client: Any, collection: str, change: Callable[[], T]) -> T:
        """Run ``change`` on ``collection`` of ``client``; its points are on disk when this returns."""
        storage = local_storage(client, collection)
        if storage is None:
            return change()
        if storage is not self._deferred:
            if not defer_sync(storage):
                logger.debug("embedded Qdrant storage is not in WAL mode; per-point commits stay")
                return change()
            self._deferred = storage
        try:
            return change()
        finally:
            checkpoint(storage)
