"""Network faults between the writers and OpenSearch, through the in-repo TCP fault proxy.

Resets after the request was sent (applied, but the client saw an error), truncated responses
and added latency must end with every document stored once with its clean vector; a bandwidth
cap (after a stall that fills every stage) must block the reader and the encoder (bounded queues)
instead of growing what is in flight.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
from checker import check_opensearch_index
from faultkit import make_documents
from proxy import FaultProxy

from sparsebridge.backends import ClusterTarget, OpenSearchBackend, Refresh, RetryPolicy
from sparsebridge.ingest import IngestStats, ingest


@pytest.fixture
def proxy(opensearch_url: str) -> Iterator[FaultProxy]:
    parsed = urlparse(opensearch_url)
    with FaultProxy(parsed.hostname or "127.0.0.1", parsed.port or 9200) as p:
        yield p


def _backend(proxy: FaultProxy, name: str, timeout: float = 10.0) -> OpenSearchBackend:
    return OpenSearchBackend(
        ClusterTarget(name, url=proxy.url),
        replicas=0,
        refresh=Refresh.NONE,
        timeout=timeout,
        retry=RetryPolicy(max_attempts=30, initial_wait=0.1, max_wait=1.0, max_total_seconds=60),
    )


def _check(opensearch_url: str, name: str, documents: list[Any], encoder: Any) -> None:
    verdict = check_opensearch_index(opensearch_url, name, documents, encoder)
    assert verdict.clean and verdict.present == len(documents), verdict


@pytest.mark.parametrize("fault", ["reset_connections", "truncate_connections", "latency"])
def test_network_faults_lose_and_duplicate_nothing(
    fault: str, proxy: FaultProxy, opensearch_url: str, encoder: Any
) -> None:
    name = f"fault-net-{uuid.uuid4().hex[:8]}"
    backend = _backend(proxy, name)
    backend.ensure_schema()  # before the faults: they hit the bulk writes
    if fault == "latency":
        proxy.faults.latency = 0.05
    else:
        proxy.faults.path = "/_bulk"
        setattr(proxy.faults, fault, 4)
    documents = make_documents(640, seed=21, prefix=fault)
    stats = ingest(documents, encoder=encoder, backend=backend, batch_size=32, writers=2)
    print(f"\n{fault}: injected {dict(proxy.injected)}; retries {stats.retries}, stale {stats.stale}")
    _check(opensearch_url, name, documents, encoder)
    assert stats.written + stats.stale == len(documents)
    if fault != "latency":
        assert proxy.injected[fault] == 4
        assert stats.retries >= 4, "the faults were not seen by the writers"
    backend.client.indices.delete(index=name)
    backend.close()


def test_a_bandwidth_cap_blocks_the_producer_instead_of_growing_memory(
    proxy: FaultProxy, opensearch_url: str, encoder: Any
) -> None:
    """The link first passes nothing until every stage is seen full, then is capped: however slow the
    encoder (a loaded machine), the queues fill, and what is in flight never passes the bound."""
    name = f"fault-bw-{uuid.uuid4().hex[:8]}"
    backend = _backend(proxy, name, timeout=600.0)  # a held request waits; it is not retried
    backend.ensure_schema()
    documents = make_documents(480, seed=22, prefix="bw")
    batch_size, writers, queue_batches = 16, 2, 2
    # each writer holds a batch, each queue queue_batches, the encoder and the reader one each
    bound = (2 * queue_batches + writers + 2) * batch_size
    in_flight: list[int] = []
    seen_full = threading.Event()

    def release() -> None:
        proxy.faults.bandwidth = 20_000  # bytes/s, client -> server
        proxy.faults.hold = False

    def sample(stats: IngestStats) -> None:
        in_flight.append(stats.in_flight)
        if stats.in_flight >= bound and not seen_full.is_set():
            seen_full.set()
            release()

    proxy.faults.path, proxy.faults.hold = "/_bulk", True
    safety = threading.Timer(300, release)  # a run that never fills its queues still ends (and fails below)
    safety.start()
    try:
        stats = ingest(
            documents,
            encoder=encoder,
            backend=backend,
            batch_size=batch_size,
            writers=writers,
            queue_batches=queue_batches,
            on_progress=sample,
        )
    finally:
        safety.cancel()
        release()
    print(
        f"\nstalled, then capped: {stats.elapsed_s:.1f}s, in flight at most {max(in_flight)} of {bound}; "
        f"encoder busy {stats.encode_busy:.0%}, writers busy {stats.write_busy:.0%}"
    )
    assert seen_full.is_set(), f"in flight peaked at {max(in_flight)} < {bound}: the stages never filled"
    assert max(in_flight) <= bound, f"{max(in_flight)} documents in flight: the producer was not blocked"
    _check(opensearch_url, name, documents, encoder)
    backend.client.indices.delete(index=name)
    backend.close()
