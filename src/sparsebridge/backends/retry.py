"""Capped exponential backoff with jitter for transient backend errors (tenacity)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

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
    """How long to keep retrying a transient failure: whichever of the two limits comes first."""

    max_attempts: int = 6
    initial_wait: float = 0.5
    max_wait: float = 8.0
    max_total_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.initial_wait < 0 or self.max_wait < self.initial_wait or self.max_total_seconds <= 0:
            raise ValueError("need 0 <= initial_wait <= max_wait and max_total_seconds > 0")


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
    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(policy.max_attempts) | stop_after_delay(policy.max_total_seconds),
        wait=wait_exponential_jitter(initial=policy.initial_wait, max=policy.max_wait),
        before_sleep=lambda state: logger.warning(
            "%s: %s failed (attempt %d), retrying: %s",
            backend,
            what,
            state.attempt_number,
            state.outcome.exception() if state.outcome else "?",
        ),
        reraise=False,
    )
    try:
        return retrying(fn)
    except RetryError as e:
        last = e.last_attempt.exception()
        raise BackendUnavailableError(
            f"{what} failed after {e.last_attempt.attempt_number} attempts: {last}", backend=backend
        ) from last
