"""The ``_bulk`` loop shared by OpenSearch and Elasticsearch, independent of any client.

It follows the contract of elasticsearch-py's ``streaming_bulk`` without its trap (per-item 429s
are only retried there with ``raise_on_error=False``): requests are chunked by item count and by
bytes; every item's status is read from the response (HTTP 200 can carry ``errors: true``); only
the items that failed with a transient status are re-sent, with capped exponential backoff and
jitter, bounded by the :class:`~sparsebridge.backends.retry.RetryPolicy`; permanent per-item
failures are collected and raised once every other item was written; fatal ones (401, 403 write
block, 404) stop at once with the engine's reason.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from sparsebridge.backends.base import WriteStats
from sparsebridge.backends.retry import FailureKind, RetryPolicy, classify_failure
from sparsebridge.errors import BackendError, BackendUnavailableError, BulkWriteError, ItemFailure

__all__ = ["BulkItem", "ItemResult", "RequestFailure", "bulk_write", "chunks"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BulkItem:
    """One bulk operation: the user's document ``id`` and its NDJSON ``lines`` (newline-terminated)."""

    id: str
    lines: str

    @property
    def size(self) -> int:
        return len(self.lines.encode("utf-8"))


@dataclass(frozen=True)
class ItemResult:
    """The engine's answer for one item: HTTP ``status``, and the error ``type``/``reason`` if any."""

    status: int | None
    type: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class RequestFailure(Exception):
    """A whole bulk request failed (no per-item answer): connection error (``status`` None) or HTTP error."""

    def __init__(self, status: int | None, type: str = "", reason: str = "") -> None:
        super().__init__(f"{status} {type}: {reason}")
        self.result = ItemResult(status, type, reason)


def chunks(items: Sequence[BulkItem], *, max_items: int, max_bytes: int) -> Iterator[list[BulkItem]]:
    """Consecutive chunks of at most ``max_items`` items and ``max_bytes`` bytes (a big item goes alone)."""
    chunk: list[BulkItem] = []
    size = 0
    for item in items:
        if chunk and (len(chunk) == max_items or size + item.size > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += item.size
    if chunk:
        yield chunk


def bulk_write(
    items: Sequence[BulkItem],
    *,
    send: Callable[[str], Sequence[ItemResult]],
    backend: str,
    policy: RetryPolicy,
    max_items: int = 500,
    max_bytes: int = 5 * 1024 * 1024,
    ignore_status: frozenset[int] = frozenset(),
    sleep: Callable[[float], None] = time.sleep,
) -> WriteStats:
    """Send ``items`` in chunks; retry only transiently failed items; return what was written.

    Args:
        items: The operations, in order.
        send: Sends one NDJSON body; returns one result per item, in order, or raises
            :class:`RequestFailure` when the whole request failed.
        backend: The backend's name, for errors and logs.
        policy: Time (and attempts) allowed per chunk for transient failures: a chunk whose
            items keep failing gives up within ``policy.max_total_seconds`` plus one request.
        max_items: Items per request.
        max_bytes: Bytes per request.
        ignore_status: Item statuses that count as done (404 for deletes).
        sleep: How to wait between attempts.

    Returns:
        ``written`` (items acknowledged), ``retries`` (item re-sends) and ``stale`` (items refused
        with a version conflict: the engine already holds the same or a newer version).

    Raises:
        BulkWriteError: Some items failed permanently; every other item was written.
        BackendUnavailableError: Items still failed transiently when the policy ran out.
        BackendError: A fatal failure (authentication, write block, missing index).
    """
    stats = WriteStats()
    failures: list[ItemFailure] = []
    for chunk in chunks(items, max_items=max_items, max_bytes=max_bytes):
        pending = chunk
        attempt = 1
        started = time.monotonic()
        while pending:
            try:
                results: Sequence[ItemResult] = send("".join(item.lines for item in pending))
            except RequestFailure as e:
                results = [e.result] * len(pending)
            if len(results) != len(pending):
                raise BackendError(
                    f"bulk answered {len(results)} items for {len(pending)} sent", backend=backend
                )
            retry: list[tuple[BulkItem, ItemResult]] = []
            for item, result in zip(pending, results, strict=True):
                if result.ok or result.status in ignore_status:
                    stats.written += 1
                    continue
                kind = classify_failure(result.status, result.type, result.reason)
                if kind is FailureKind.STALE:  # a newer (or this) version is already there
                    stats.stale += 1
                    continue
                if kind is FailureKind.FATAL:
                    raise BackendError(
                        f"write refused: {result.status} {result.type}: {result.reason}",
                        backend=backend,
                        status=result.status,
                        item_ids=[item.id],
                    )
                if kind is FailureKind.PERMANENT:
                    status = result.status if result.status is not None else 0
                    failures.append(ItemFailure(item.id, status, result.type, result.reason))
                else:
                    retry.append((item, result))
            if not retry:
                break
            elapsed = time.monotonic() - started
            wait = policy.wait_before_retry(attempt, elapsed)
            statuses = Counter(r.status for _, r in retry)
            _, last = retry[-1]
            if wait is None:
                blocked = any(
                    classify_failure(r.status, r.type, r.reason) is FailureKind.BLOCKED for _, r in retry
                )
                raise BackendUnavailableError(
                    f"{len(retry)} items still {'blocked' if blocked else 'failing'} after {attempt} "
                    f"attempts in {elapsed:.1f}s (statuses {dict(statuses)}); "
                    f"last: {last.status} {last.type}: {last.reason}",
                    backend=backend,
                    status=last.status,
                    item_ids=[item.id for item, _ in retry],
                )
            logger.info(
                "%s: bulk attempt %d: %d of %d items failed transiently %s (%s); retrying them in %.2fs",
                backend,
                attempt,
                len(retry),
                len(pending),
                dict(statuses),
                last.type or last.reason,
                wait,
            )
            stats.retries += len(retry)
            sleep(wait)
            pending = [item for item, _ in retry]
            attempt += 1
    if failures:
        first = failures[0]
        raise BulkWriteError(
            f"{len(failures)} of {len(items)} items failed permanently (the others were written); "
            f"first: {first.id!r}: {first.status} {first.type}: {first.reason}",
            backend=backend,
            failures=failures,
            stats=stats,
        )
    return stats
