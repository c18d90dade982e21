"""OpenSearch specifics on the live node: dotted tokens, refused weights, item failures, blocks, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sparsebridge.backends import ClusterTarget, OpenSearchBackend, Record, RetryPolicy
from sparsebridge.backends.lucene.bodies import feature_name, index_body
from sparsebridge.encoder import Encoder
from sparsebridge.errors import BackendError, BulkWriteError
from sparsebridge.types import Document, SparseVector

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def backend(opensearch_url: str) -> Iterator[OpenSearchBackend]:
    b = OpenSearchBackend(ClusterTarget(f"os-{uuid.uuid4().hex[:10]}", url=opensearch_url), replicas=0)
    yield b
    b.client.indices.delete(index=b.target.index, ignore_unavailable=True)
    b.close()


def test_dotted_bert_tokens_are_found_with_exact_scores(backend: OpenSearchBackend, encoder: Encoder) -> None:
    tokenizer: Any = encoder.model.tokenizer
    vocab = tokenizer.get_vocab()  # the real BERT uncased vocabulary of splade-tiny
    names = {feature_name(i) for i in vocab.values()}
    assert len(names) == len(vocab) == 30522 and not any("." in n for n in names)
    dotted = {t: vocab[t] for t in (".", "...", "##.")}
    assert sorted(t for t in vocab if "." in t) == sorted(dotted)
    backend.ensure_schema()
    records = [
        Record(Document(token, f"doc for {token}"), SparseVector.from_dict({i: 1.5, vocab["_"]: 0.25}))
        for token, i in dotted.items()
    ]
    backend.write(records)
    for token, i in dotted.items():
        [hit] = backend.search(SparseVector.from_dict({i: 2.0}), k=5)
        assert hit.id == token and hit.score == pytest.approx(3.0, rel=2**-8)


def test_weights_the_engine_refuses_are_dropped_before_sending(backend: OpenSearchBackend) -> None:
    backend.ensure_schema()
    tiny = SparseVector.from_dict({1: 1e-40, 2: 0.5})  # 1e-40 is a float32 subnormal
    # Sent as is, the engine refuses the whole document (this is why features() drops it):
    raw = '{"index":{"_id":"raw"}}\n{"doc_id":"raw","text":"t","metadata":{},"splade":{"1":1e-40,"2":0.5}}\n'
    answer = backend.client.bulk(index=backend.target.index, body=raw)
    assert answer["items"][0]["index"]["status"] == 400
    stats = backend.write([Record(Document("kept", "t"), tiny)])
    assert stats.written == 1
    [hit] = backend.search(SparseVector.from_dict({2: 1.0}), k=1)
    assert hit.id == "kept"


def test_permanent_item_failures_are_reported_and_the_rest_written(backend: OpenSearchBackend) -> None:
    body = index_body(field="splade", replicas=0)
    body["mappings"]["properties"]["metadata"] = {
        "properties": {"n": {"type": "integer"}}
    }  # indexed metadata
    backend.client.indices.create(index=backend.target.index, body=body)
    backend.ensure_schema()  # same field types: accepted
    vector = SparseVector.from_dict({5: 1.0})
    records = [Record(Document(f"ok{i}", "t", {"n": i}), vector) for i in range(3)]
    records.insert(1, Record(Document("bad", "t", {"n": "not a number"}), vector))
    with pytest.raises(BulkWriteError) as raised:
        backend.write(records)
    [failure] = raised.value.failures
    assert (failure.id, failure.status, failure.type) == ("bad", 400, "mapper_parsing_exception")
    assert "n" in failure.reason
    assert backend.count() == 3


def test_a_write_block_fails_fast_with_the_reason(backend: OpenSearchBackend) -> None:
    backend.ensure_schema()
    backend.client.indices.put_settings(index=backend.target.index, body={"index.blocks.write": True})
    slow = OpenSearchBackend(backend.target, retry=RetryPolicy(max_total_seconds=30))
    started = time.monotonic()
    with pytest.raises(BackendError, match="FORBIDDEN/8") as raised:
        slow.write([Record(Document("a", "t"), SparseVector.from_dict({1: 1.0}))])
    assert raised.value.status == 403 and time.monotonic() - started < 5
    slow.close()
    backend.client.indices.put_settings(index=backend.target.index, body={"index.blocks.write": False})


def test_search_on_a_missing_index_says_so(opensearch_url: str) -> None:
    backend = OpenSearchBackend(ClusterTarget(f"missing-{uuid.uuid4().hex[:8]}", url=opensearch_url))
    with pytest.raises(BackendError, match="does not exist"):
        backend.search(SparseVector.from_dict({1: 1.0}))
    backend.close()


def test_cli_ingest_and_search(opensearch_url: str, tmp_path: Path) -> None:
    index = f"cli-{uuid.uuid4().hex[:8]}"
    target = f"opensearch://{opensearch_url.removeprefix('http://')}/{index}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "sparsebridge.cli", *args, "--model", "splade-tiny", "--to", target]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    try:
        ingest = run("ingest", "--input", str(REPO / "examples" / "sample_corpus.jsonl"), "--no-progress")
        assert ingest.returncode == 0, ingest.stderr
        assert f"wrote 24 documents to {target}" in ingest.stdout
        search = run("search", "which planet is red", "-k", "3")
        assert search.returncode == 0, search.stderr
        assert "Mars" in search.stdout.splitlines()[0]
        wrong = run("search", "x", "--es-field-type", "sparse_vector")
        assert wrong.returncode == 2 and "elasticsearch:// targets only" in wrong.stderr
    finally:
        import opensearchpy

        opensearchpy.OpenSearch(hosts=[opensearch_url]).indices.delete(index=index, ignore_unavailable=True)
