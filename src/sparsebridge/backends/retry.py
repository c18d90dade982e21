"""Retries of transient backend errors: capped exponential backoff with jitter, under one deadline.

Every retry loop (:func:`call_with_retry` for single requests: schema checks, searches, Qdrant
calls; the bulk writer for item re-sends) asks :meth:`RetryPolicy.wait_before_retry` how long to
wait, so they share one rule: keep retrying while failures are transient, until
``max_total_seconds`` have passed since the first attempt; no attempt starts after that deadline.
A call that keeps failing therefore ends within ``max_total_seconds`` plus one request's timeout,
and not before the deadline.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from sparsebridge.errors import BackendUnavailableError

__all__ = ["FailureKind", "RetryPolicy", "call_with_retry", "classify_failure", "is_retryable"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


class FailureKind(str, Enum):
    """How a failed request or bulk item is handled: one classification for every backend."""

    TRANSIENT = "transient"  # retry only the failed items, capped exponential backoff + jitter
    BLOCKED = "blocked"  # e.g. disk flood-stage block (answers 429): bounded retry, then name it
    PERMANENT = "permanent"  # per item (mapping/parsing): dead-letter, never retried
    FATAL = "fatal"  # configuration (auth, write block, missing index): fail fast
    STALE = "stale"  # the engine holds the same or a newer version (409 under versioning): done, counted


_TRANSIENT_STATUS = frozenset({408, 429, 502, 503, 504})
_FATAL_STATUS = frozenset({401, 403, 404})


def classify_failure(status: int | None, error_type: str = "", reason: str = "") -> FailureKind:
    """Classify a failure from its HTTP status (``None``: no answer at all) and the engine's error.

    Example:
        >>> classify_failure(429, "es_rejected_execution_exception").value
        'transient'
        >>> classify_failure(429, "cluster_block_exception", "blocked by: [TOO_MANY_REQUESTS/12/...]").value
        'blocked'
        >>> classify_failure(400, "mapper_parsing_exception").value
        'permanent'
        >>> classify_failure(409, "version_conflict_engine_exception").value
        'stale'
    """
    text = f"{error_type} {reason}".lower()
    if status is None:
        return FailureKind.TRANSIENT
    if status == 409 and "version_conflict" in text:
        return FailureKind.STALE
    if status == 429 and ("cluster_block_exception" in text or "/12/" in text or "flood" in text):
        return FailureKind.BLOCKED
    if status in _TRANSIENT_STATUS or status >= 500:
        return FailureKind.TRANSIENT
    if status in _FATAL_STATUS:
        return FailureKind.FATAL
    return FailureKind.PERMANENT


def is_retryable(kind: FailureKind) -> bool:
    """Whether a failure of this kind is retried (with backoff, within the :class:`RetryPolicy`)."""
    return kind in (FailureKind.TRANSIENT, FailureKind.BLOCKED)


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep retrying transient failures: ``max_total_seconds`` from the first attempt.

    ``max_attempts`` (default: no limit) caps the attempts too. The wait before attempt ``n + 1``
    is ``initial_wait * 2 ** (n - 1)``, capped at ``max_wait``, between half and all of it
    (jitter, so concurrent writers spread their retries), and cut to the time left.
    """

    max_attempts: int | None = None
    initial_wait: float = 0.5
    max_wait: float = 8.0
    max_total_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 (or None: no limit)")
        if self.initial_wait < 0 or self.max_wait < self.initial_wait or self.max_total_seconds <= 0:
            raise ValueError("need 0 <= initial_wait <= max_wait and max_total_seconds > 0")

    def wait_before_retry(self, attempt: int, elapsed: float) -> float | None:
        """Seconds to wait before the next attempt, after ``attempt`` attempts in ``elapsed`` seconds.

        None when the policy is spent (the deadline passed, or ``max_attempts`` were made).

        Example:
            >>> RetryPolicy(max_total_seconds=10).wait_before_retry(1, 9.9) <= 0.1
            True
            >>> RetryPolicy(max_total_seconds=10).wait_before_retry(1, 10.0) is None
            True
        """
        left = self.max_total_seconds - elapsed
        if left <= 0 or (self.max_attempts is not None and attempt >= self.max_attempts):
            return None
        backoff = min(self.max_wait, self.initial_wait * 2.0 ** min(attempt - 1, 64))
        return min(backoff / 2 + random.uniform(0, backoff / 2), left)


def call_with_retry(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    is_transient: Callable[[BaseException], bool],
    backend: str,
    what: str,
) -> T:
    """Run ``fn``; retry only errors ``is_transient`` accepts, then raise BackendUnavailableError.

    Non-transient errors propagate at once, unchanged.
    """
    started = time.monotonic()
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as e:
            if not is_transient(e):
                raise
            elapsed = time.monotonic() - started
            wait = policy.wait_before_retry(attempt, elapsed)
            if wait is None:
                status = getattr(e, "status_code", None)  # the clients' HTTP errors carry the status
                raise BackendUnavailableError(
                    f"{what} failed after {attempt} attempts in {elapsed:.1f}s: {e}",
                    backend=backend,
                    status=status if isinstance(status, int) else None,
                ) from e
            logger.warning(
                "%s: %s failed (attempt %d), retrying in %.2fs: %s", backend, what, attempt, wait, e
            )
            time.sleep(wait)
            attempt += 1
