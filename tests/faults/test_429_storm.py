"""A 429 storm through the whole pipeline: a node with a one-slot write queue, four concurrent writers.

Every item the node rejects with 429 is re-sent (only those items); the run ends with every
document stored once, with its clean vector.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from checker import check_opensearch_index
from faultkit import make_documents

from sparsebridge.backends import ClusterTarget, ElasticsearchBackend, OpenSearchBackend, Refresh, RetryPolicy
from sparsebridge.ingest import ingest

NODES = {
    "opensearch": ("tiny_queue_node", OpenSearchBackend),
    "elasticsearch": ("tiny_queue_es_node", ElasticsearchBackend),
}


@pytest.mark.parametrize("engine", list(NODES))
def test_a_429_storm_loses_and_duplicates_nothing(
    engine: str, encoder: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    fixture, backend_class = NODES[engine]
    tiny_queue_node = str(request.getfixturevalue(fixture))
    name = f"fault-storm-{uuid.uuid4().hex[:8]}"
    backend = backend_class(
        ClusterTarget(name, url=tiny_queue_node),
        replicas=0,
        shards=3,  # one bulk fans out to several shard requests on the one-slot queue
        refresh=Refresh.NONE,
        chunk_items=8,
        retry=RetryPolicy(max_attempts=80, initial_wait=0.05, max_wait=1.0, max_total_seconds=120),
    )
    documents = make_documents(1200, seed=31, prefix="storm")
    stats = ingest(documents, encoder=encoder, backend=backend, batch_size=32, writers=4, run_dir=tmp_path)
    verdict = check_opensearch_index(tiny_queue_node, name, documents, encoder)
    summary = f"retries {stats.retries}, stale {stats.stale}, {stats.elapsed_s:.1f}s"
    print(f"\n{engine} 429 storm: {verdict}; {summary}")
    assert stats.retries > 0, "the node never answered 429: the fault was not produced"
    assert verdict.clean and verdict.present == len(documents), verdict
    assert stats.written + stats.stale == len(documents) and stats.dead_lettered == 0
    backend.close()
