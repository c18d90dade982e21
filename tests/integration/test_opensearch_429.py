"""A real fault: a second OpenSearch node with a one-slot write queue answers real 429s.

Several threads write at once; every bulk item rejected with 429 is re-sent (only those items,
with capped backoff and jitter) until all are in. Every document must be present exactly once,
and the retries must be counted in the WriteStats of the writes.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections import Counter

import numpy as np
import pytest

from sparsebridge.backends import ClusterTarget, OpenSearchBackend, Record, Refresh, RetryPolicy
from sparsebridge.backends.base import WriteStats
from sparsebridge.types import Document, SparseVector

THREADS = 6
DOCS_PER_THREAD = 600


def _records(thread: int, rng: np.random.Generator) -> list[Record]:
    out = []
    for i in range(DOCS_PER_THREAD):
        indices = rng.choice(30522, size=120, replace=False)
        vector = SparseVector.from_dict(
            {int(j): float(w) for j, w in zip(indices, rng.uniform(0.05, 3, 120), strict=True)}
        )
        out.append(Record(Document(f"t{thread}-d{i}", f"thread {thread} document {i}"), vector))
    return out


def test_real_429s_are_retried_until_every_document_is_in_exactly_once(
    tiny_queue_node: str, caplog: pytest.LogCaptureFixture
) -> None:
    index = f"fault-429-{uuid.uuid4().hex[:10]}"
    policy = RetryPolicy(max_attempts=60, initial_wait=0.05, max_wait=1.0, max_total_seconds=120)
    backend = OpenSearchBackend(
        ClusterTarget(index, url=tiny_queue_node),
        replicas=0,
        shards=3,  # one bulk fans out to several shard requests on the one-slot queue
        refresh=Refresh.NONE,
        chunk_items=25,
        retry=policy,
    )
    backend.ensure_schema()
    rng = np.random.default_rng(7)
    batches = [_records(t, rng) for t in range(THREADS)]
    stats: list[WriteStats] = []
    errors: list[BaseException] = []

    def writer(records: list[Record]) -> None:
        try:
            stats.append(backend.write(records))
        except BaseException as e:
            errors.append(e)

    caplog.set_level(logging.INFO, logger="sparsebridge.backends.lucene.bulk")
    threads = [threading.Thread(target=writer, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    total = WriteStats()
    for s in stats:
        total.add(s)
    rejected = sum(
        int(n) for m in caplog.messages for n in re.findall(r"429: (\d+)", m) if "failed transiently" in m
    )
    print(
        f"\n429 fault: {THREADS} threads, {total.written} written, {rejected} items answered 429, "
        f"{total.retries} item retries"
    )
    assert total.written == THREADS * DOCS_PER_THREAD
    assert rejected > 0, "the node never answered 429: the fault was not produced"
    assert total.retries >= rejected

    backend.client.indices.refresh(index=index)
    assert backend.count() == THREADS * DOCS_PER_THREAD
    response = backend.client.search(
        index=index, body={"size": 0, "aggs": {"ids": {"terms": {"field": "doc_id", "size": 10000}}}}
    )
    seen = Counter({b["key"]: b["doc_count"] for b in response["aggregations"]["ids"]["buckets"]})
    expected = {r.document.id for b in batches for r in b}
    assert set(seen) == expected and set(seen.values()) == {1}
    backend.client.indices.delete(index=index)
    backend.close()
