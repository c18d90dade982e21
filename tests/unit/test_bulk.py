"""The bulk loop as data: a scripted engine answer per item (no client, no network)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from sparsebridge.backends.lucene.bulk import BulkItem, ItemResult, RequestFailure, bulk_write, chunks
from sparsebridge.backends.retry import RetryPolicy
from sparsebridge.errors import BackendError, BackendUnavailableError, BulkWriteError

POLICY = RetryPolicy(max_attempts=5, initial_wait=0.01, max_wait=0.02, max_total_seconds=5)
REJECTED = ItemResult(429, "es_rejected_execution_exception", "rejected execution of coordinating operation")


def items(n: int) -> list[BulkItem]:
    return [BulkItem(f"d{i}", f'{{"index":{{"_id":"{i}"}}}}\n{{"n":{i}}}\n') for i in range(n)]


class Engine:
    """Answers each sent item from a script: per id, the statuses of its successive attempts."""

    def __init__(self, script: dict[str, list[ItemResult]]) -> None:
        self.script = script
        self.sent: list[list[str]] = []

    def __call__(self, body: str) -> Sequence[ItemResult]:
        ids = [f"d{line.split(':')[-1].rstrip('}')}" for line in body.splitlines()[1::2]]
        self.sent.append(ids)
        return [self.script.get(i, []).pop(0) if self.script.get(i) else ItemResult(201) for i in ids]


def test_only_failed_items_are_resent_and_counted() -> None:
    engine = Engine({"d1": [REJECTED, REJECTED], "d3": [ItemResult(503, "unavailable_shards_exception")]})
    stats = bulk_write(items(5), send=engine, backend="t", policy=POLICY, sleep=lambda s: None)
    assert engine.sent == [["d0", "d1", "d2", "d3", "d4"], ["d1", "d3"], ["d1"]]
    assert (stats.written, stats.retries) == (5, 3)


def test_permanent_failures_are_reported_after_the_rest_is_written() -> None:
    bad = ItemResult(400, "mapper_parsing_exception", "failed to parse field [n]")
    engine = Engine({"d2": [bad], "d0": [REJECTED]})
    with pytest.raises(BulkWriteError) as raised:
        bulk_write(items(4), send=engine, backend="t", policy=POLICY, max_items=2, sleep=lambda s: None)
    assert engine.sent == [["d0", "d1"], ["d0"], ["d2", "d3"]]
    [failure] = raised.value.failures
    assert (failure.id, failure.status, failure.type) == ("d2", 400, "mapper_parsing_exception")
    assert raised.value.item_ids == ("d2",)


def test_a_write_block_fails_fast_with_the_reason() -> None:
    blocked = ItemResult(
        403, "cluster_block_exception", "index [x] blocked by: [FORBIDDEN/8/index write (api)];"
    )
    engine = Engine({"d0": [blocked]})
    with pytest.raises(BackendError, match="FORBIDDEN/8/index write") as raised:
        bulk_write(items(3), send=engine, backend="t", policy=POLICY, sleep=lambda s: None)
    assert raised.value.status == 403 and len(engine.sent) == 1


def test_transient_failures_stop_when_the_policy_runs_out() -> None:
    engine = Engine({"d1": [REJECTED] * 10})
    waits: list[float] = []
    with pytest.raises(BackendUnavailableError, match="still failing after 5 attempts") as raised:
        bulk_write(items(2), send=engine, backend="t", policy=POLICY, sleep=waits.append)
    assert raised.value.item_ids == ("d1",) and "es_rejected_execution_exception" in str(raised.value)
    assert len(waits) == 4 and all(0.005 <= w <= 0.02 for w in waits)  # capped, jittered


def test_flood_stage_block_is_named() -> None:
    flood = ItemResult(
        429, "cluster_block_exception", "blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded]"
    )
    with pytest.raises(BackendUnavailableError, match="still blocked"):
        bulk_write(
            items(1), send=Engine({"d0": [flood] * 9}), backend="t", policy=POLICY, sleep=lambda s: None
        )


def test_a_failed_request_retries_its_items() -> None:
    calls = []

    def send(body: str) -> Sequence[ItemResult]:
        calls.append(body)
        if len(calls) == 1:
            raise RequestFailure(None, "ConnectionError", "connection refused")
        return [ItemResult(200)] * body.count("_id")

    stats = bulk_write(items(3), send=send, backend="t", policy=POLICY, sleep=lambda s: None)
    assert (stats.written, stats.retries, len(calls)) == (3, 3, 2)


def test_deletes_ignore_missing_ids() -> None:
    engine = Engine({"d0": [ItemResult(404, "", "not_found")]})
    stats = bulk_write(items(2), send=engine, backend="t", policy=POLICY, ignore_status=frozenset({404}))
    assert stats.written == 2


def test_chunks_by_count_and_bytes() -> None:
    sized = [BulkItem(str(i), "x" * n + "\n") for i, n in enumerate([10, 10, 10, 100, 10])]
    assert [[i.id for i in c] for c in chunks(sized, max_items=2, max_bytes=50)] == [
        ["0", "1"],
        ["2"],
        ["3"],
        ["4"],
    ]
