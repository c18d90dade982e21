"""Run numbers, poison documents and write blocks, against the real engines.

- A stale replay of an older run never overwrites newer vectors (external versioning on
  OpenSearch and Elasticsearch, Qdrant's update filter, the same rule in the in-memory reference).
- Poison documents (refused per item by the engine) go to the dead letters, each sent once and
  never retried; every good document of the same batches is written.
- An index write block fails the run at once and names the block.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from checker import check, check_opensearch_index, read_opensearch, read_qdrant, read_qdrant_edge
from faultkit import make_documents

from postgres_server import drop_table, read_postgres
from sparsebridge.backends import (
    ClusterTarget,
    ElasticsearchBackend,
    LuceneBackend,
    MemoryBackend,
    OpenSearchBackend,
    QdrantBackend,
    QdrantEdgeBackend,
    QdrantEdgeTarget,
    QdrantTarget,
    RetryPolicy,
    open_backend,
)
from sparsebridge.backends.base import Backend, point_id
from sparsebridge.errors import BackendError, BackendUnavailableError
from sparsebridge.ingest import ingest
from sparsebridge.types import Document

Reader = Callable[[], dict[str, list[dict[int, float]]]]


CLUSTERS: dict[str, type[LuceneBackend]] = {
    "opensearch": OpenSearchBackend,
    "elasticsearch": ElasticsearchBackend,
}


@pytest.fixture(params=list(CLUSTERS))
def cluster(request: pytest.FixtureRequest) -> tuple[str, type[LuceneBackend]]:
    """(the node's url, the backend class) of each engine's live node."""
    return str(request.getfixturevalue(f"{request.param}_url")), CLUSTERS[request.param]


@pytest.fixture(params=[*CLUSTERS, "qdrant-local", "qdrant-edge", "memory", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Backend, Reader]]:
    name = f"fault-ver-{uuid.uuid4().hex[:8]}"
    backend: Any
    if request.param in CLUSTERS:
        url = request.getfixturevalue(f"{request.param}_url")
        backend = CLUSTERS[request.param](ClusterTarget(name, url=url), replicas=0)
        yield backend, lambda: read_opensearch(url, name)  # the same HTTP API reads both engines
        backend.client.indices.delete(index=name)
    elif request.param == "qdrant-local":
        backend = QdrantBackend(QdrantTarget(name, path=str(tmp_path / "q")))
        yield backend, lambda: read_qdrant(backend.client, name)
    elif request.param == "qdrant-edge":
        backend = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path / "edge"), name))

        def read_shard() -> dict[str, list[dict[int, float]]]:
            # an independent read of what is on disk: a copy of the open shard, its log replayed
            copy = tmp_path / f"copy-{uuid.uuid4().hex[:8]}"
            shutil.copytree(tmp_path / "edge" / name, copy)
            return read_qdrant_edge(str(copy))

        yield backend, read_shard
    elif request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        backend = open_backend(f"{url}/{name}")
        yield backend, lambda: read_postgres(url, name)
        backend.close()
        drop_table(url, name)
    else:
        backend = MemoryBackend()
        yield backend, lambda: {i: [v.as_dict()] for i, (v, _) in backend._rows.items()}
    backend.close()


def test_a_stale_replay_of_an_older_run_never_overwrites_newer_vectors(
    target: tuple[Backend, Reader], encoder: Any
) -> None:
    backend, read = target
    old = make_documents(300, seed=1, prefix="d")
    new = make_documents(300, seed=2, prefix="d")  # the same ids, other texts
    ids = [d.id for d in new]
    clean_old = dict(zip(ids, encoder.encode_documents([d.text for d in old]), strict=True))
    clean_new = dict(zip(ids, encoder.encode_documents([d.text for d in new]), strict=True))

    ingest(new, encoder=encoder, backend=backend, batch_size=64, run_number=2)
    replay = ingest(old, encoder=encoder, backend=backend, batch_size=64, run_number=1)
    if backend.name != "qdrant":  # Qdrant does not say which points its update filter skipped
        assert (replay.written, replay.stale) == (0, 300)
    verdict = check(read(), sent=ids, acknowledged=ids, expected=clean_new)
    assert verdict.clean and verdict.present == 300, verdict

    same = ingest(new, encoder=encoder, backend=backend, batch_size=64, run_number=2)  # a rerun of run 2
    if backend.name != "qdrant":
        assert same.stale == 300
    newer = ingest(old, encoder=encoder, backend=backend, batch_size=64, run_number=3)
    assert newer.written == 300 and newer.stale == 0
    verdict = check(read(), sent=ids, acknowledged=ids, expected=clean_old)
    assert verdict.clean and verdict.present == 300, verdict


def test_poison_documents_alone_reach_the_dead_letters_and_are_never_retried(
    cluster: tuple[str, type[LuceneBackend]], encoder: Any, tmp_path: Path
) -> None:
    url, backend_class = cluster
    name = f"fault-poison-{uuid.uuid4().hex[:8]}"
    backend = backend_class(ClusterTarget(name, url=url), replicas=0)
    sent: Counter[str] = Counter()
    send = backend._send_bulk

    def spy(body: str) -> Any:  # the transport boundary: count what each request carries
        for line in body.splitlines()[::2]:
            sent[json.loads(line)["index"]["_id"]] += 1
        return send(body)

    backend._send_bulk = spy  # type: ignore[method-assign]
    good = make_documents(400, seed=3)
    # a keyword term longer than 32766 bytes: the engines refuse the item ("immense term"), 400
    poison = [Document("p" * 33000 + str(i), "river flood poison") for i in range(5)]
    documents = good[:50] + poison[:2] + good[50:200] + poison[2:] + good[200:]
    run_dir = tmp_path / "run"
    stats = ingest(
        documents,
        encoder=encoder,
        backend=backend,
        batch_size=64,
        run_dir=run_dir,
        max_dead_letter_fraction=0.05,
    )
    letters = [json.loads(line) for line in (run_dir / "dead_letter.jsonl").read_text().splitlines()]
    assert sorted(d["id"] for d in letters) == sorted(d.id for d in poison)
    # OpenSearch: illegal_argument_exception; Elasticsearch wraps it in document_parsing_exception
    wrapper = {"opensearch": "illegal_argument_exception", "elasticsearch": "document_parsing_exception"}
    assert {(d["status"], d["type"]) for d in letters} == {(400, wrapper[backend.name])}
    assert all("immense term" in d["reason"] for d in letters)  # the cause is in the reason
    assert [sent[point_id(d.id)] for d in poison] == [1] * 5  # never retried
    assert stats.written == 400 and stats.dead_lettered == 5
    verdict = check_opensearch_index(url, name, good, encoder)
    assert verdict.clean and verdict.present == 400, verdict
    backend.client.indices.delete(index=name)
    backend.close()


def test_an_index_write_block_fails_fast_and_names_the_block(
    cluster: tuple[str, type[LuceneBackend]], encoder: Any, tmp_path: Path
) -> None:
    url, backend_class = cluster
    name = f"fault-block-{uuid.uuid4().hex[:8]}"
    backend = backend_class(ClusterTarget(name, url=url), replicas=0)
    first = make_documents(100, seed=4)
    ingest(first, encoder=encoder, backend=backend, batch_size=50)
    _put(url, f"/{name}/_settings", {"index.blocks.write": True})
    run_dir = tmp_path / "run"
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"FORBIDDEN/8/index write") as info:
        ingest(make_documents(300, seed=5, prefix="late"), encoder=encoder, backend=backend, run_dir=run_dir)
    elapsed = time.monotonic() - started
    assert info.value.status == 403 and "cluster_block_exception" in str(info.value)
    assert elapsed < 15, f"took {elapsed:.1f}s: not a fail-fast"
    assert json.loads((run_dir / "checkpoint.json").read_text())["position"] == 0
    _put(url, f"/{name}/_settings", {"index.blocks.write": False})
    verdict = check_opensearch_index(url, name, first, encoder)
    assert verdict.clean and verdict.present == 100, verdict
    backend.client.indices.delete(index=name)
    backend.close()


def _put(url: str, path: str, body: Any) -> None:
    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), method="PUT", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30):
        pass


def test_a_flood_stage_block_is_retried_within_the_budget_then_named(
    cluster: tuple[str, type[LuceneBackend]], encoder: Any, tmp_path: Path
) -> None:
    url, backend_class = cluster
    name = f"fault-flood-{uuid.uuid4().hex[:8]}"
    policy = RetryPolicy(max_attempts=50, initial_wait=0.2, max_wait=1.0, max_total_seconds=4)
    backend = backend_class(ClusterTarget(name, url=url), replicas=0, retry=policy)
    backend.ensure_schema()
    # what the disk flood-stage watermark sets: answers 429 TOO_MANY_REQUESTS/12, not cleared by waiting
    _put(url, f"/{name}/_settings", {"index.blocks.read_only_allow_delete": True})
    started = time.monotonic()
    # refused at the preflight (recording the model in the mapping) or by the bulk writes
    with pytest.raises(BackendUnavailableError, match=r"(still blocked|failed) after \d+ attempts") as info:
        ingest(make_documents(64, seed=6, prefix="flood"), encoder=encoder, backend=backend, run_dir=tmp_path)
    elapsed = time.monotonic() - started
    assert "TOO_MANY_REQUESTS/12" in str(info.value) and info.value.status == 429
    assert 3 < elapsed < 20, f"{elapsed:.1f}s: not a bounded retry"
    _put(url, f"/{name}/_settings", {"index.blocks.read_only_allow_delete": None})
    backend.client.indices.delete(index=name)
    backend.close()
