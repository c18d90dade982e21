"""Every collection and index records the model that wrote it; another model is refused, naming both.

Real engines: embedded Qdrant, Qdrant Edge, the OpenSearch node and the Elasticsearch node.
"Another model" is the bundled MiniLM (its name and its tokenizer's vocabulary, recorded as another
tool would record it) or a vocabulary that differs in one token.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from sparsebridge.backends import (
    ClusterTarget,
    ElasticsearchBackend,
    MemoryBackend,
    OpenSearchBackend,
    QdrantBackend,
    QdrantEdgeBackend,
    QdrantEdgeTarget,
    QdrantTarget,
)
from sparsebridge.backends.model_identity import MODEL_KEY, ModelIdentity, check_model
from sparsebridge.encoder.dense import DenseEncoder
from sparsebridge.encoder.models import resolve_model
from sparsebridge.errors import SchemaMismatchError
from sparsebridge.ingest import ingest
from sparsebridge.types import Document

DOCS = [Document(f"d{i}", f"river flood number {i}") for i in range(20)]


class _Named:
    def __init__(self, name: str, vocab: list[str]) -> None:
        self.model_name, self.vocab = name, vocab


@pytest.fixture(scope="module")
def minilm() -> ModelIdentity:
    dense = DenseEncoder.load("minilm", device="cpu")
    tokenizer: Any = dense.model.tokenizer
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    identity = ModelIdentity.of(_Named(resolve_model("minilm"), vocab))
    assert identity is not None
    return identity


def _refused_then_allowed(backend: Any, encoder: Any, other: ModelIdentity) -> None:
    mine = ModelIdentity.of(encoder)
    backend.ensure_schema()
    backend.store_model(other.to_json())  # another model wrote this target
    with pytest.raises(SchemaMismatchError) as info:
        ingest(DOCS, encoder=encoder, backend=backend, batch_size=8)
    message = str(info.value)
    assert f"written with model {other}, not with {mine}" in message and "--allow-model-mismatch" in message
    assert backend.count() == 0  # refused before anything was encoded or written
    with pytest.raises(SchemaMismatchError):
        check_model(backend, mine, record=False)  # a search is refused the same way
    stats = ingest(DOCS, encoder=encoder, backend=backend, batch_size=8, allow_model_mismatch=True)
    assert stats.written == len(DOCS)
    assert backend.stored_model() == other.to_json()  # an allowed mismatch records nothing new


def test_the_identity_is_the_vocabulary_and_the_name(encoder: Any, minilm: ModelIdentity) -> None:
    mine = ModelIdentity.of(encoder)
    assert mine is not None and mine.vocab_size == encoder.vocab_size == 30522
    assert minilm.vocab_sha256 == mine.vocab_sha256 and minilm.model != mine.model  # both BERT uncased
    vocab = list(encoder.vocab)
    vocab[1000] = "[changed]"
    assert ModelIdentity.of(_Named(encoder.model_name, vocab)) != mine


def test_the_same_files_at_another_path_are_the_same_model_and_retrained_ones_are_not(
    encoder: Any, tmp_path: Path
) -> None:
    mine = ModelIdentity.of(encoder)
    vocab = list(encoder.vocab)
    assert mine is not None and mine.files_sha256 is not None
    copy = tmp_path / "moved"  # another install, another venv, another Ray node
    shutil.copytree(encoder.model_name, copy)
    (copy / "README.md").write_text("a new model card\n")  # not part of the model
    moved = ModelIdentity.of(_Named(str(copy), vocab))
    assert moved is not None and moved.model != mine.model and moved.matches(mine)
    memory = MemoryBackend()
    memory.store_model(mine.to_json())
    check_model(memory, moved, record=False)  # accepted
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    retrained = ModelIdentity.of(_Named(str(copy), vocab))
    assert retrained is not None and not retrained.matches(mine)
    with pytest.raises(SchemaMismatchError, match="files sha256"):
        check_model(memory, retrained, record=False)
    recorded_by_name = {k: v for k, v in mine.to_json().items() if k != "files_sha256"}
    assert ModelIdentity.from_json(recorded_by_name).matches(mine)  # recorded without files: the name


def test_embedded_qdrant_records_the_model_and_refuses_another(
    encoder: Any, minilm: ModelIdentity, tmp_path: Path
) -> None:
    backend = QdrantBackend(QdrantTarget("docs", path=str(tmp_path / "q")))
    ingest(DOCS, encoder=encoder, backend=backend, batch_size=8)
    backend.close()
    reopened = QdrantBackend(QdrantTarget("docs", path=str(tmp_path / "q")))
    try:
        assert reopened.stored_model() == ModelIdentity.of(encoder).to_json()  # type: ignore[union-attr]
        ingest(DOCS, encoder=encoder, backend=reopened, batch_size=8)  # the same model: accepted
    finally:
        reopened.close()
    other = QdrantBackend(QdrantTarget("other", path=str(tmp_path / "q2")))
    try:
        _refused_then_allowed(other, encoder, minilm)
    finally:
        other.close()


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch"])
def test_clusters_record_the_model_in_the_mapping_meta(
    encoder: Any, minilm: ModelIdentity, engine: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(f"{engine}_url")
    backend_class = {"opensearch": OpenSearchBackend, "elasticsearch": ElasticsearchBackend}[engine]
    names = [f"model-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    first, second = (backend_class(ClusterTarget(n, url=url), replicas=0) for n in names)
    try:
        ingest(DOCS, encoder=encoder, backend=first, batch_size=8)
        mapping = first.client.indices.get_mapping(index=names[0])[names[0]]["mappings"]
        assert mapping["_meta"][MODEL_KEY] == ModelIdentity.of(encoder).to_json()  # type: ignore[union-attr]
        first.ensure_schema()  # the recorded _meta is not a schema difference
        _refused_then_allowed(second, encoder, minilm)
    finally:
        for name, backend in zip(names, (first, second), strict=True):
            backend.client.indices.delete(index=name)
            backend.close()


def test_the_memory_reference_and_a_target_without_a_record(encoder: Any) -> None:
    memory = MemoryBackend()
    assert memory.stored_model() is None
    check_model(memory, ModelIdentity.of(encoder), record=False)  # nothing recorded: nothing to compare
    assert memory.stored_model() is None  # a search records nothing
    ingest(DOCS, encoder=encoder, backend=memory, batch_size=8)
    assert memory.stored_model() == ModelIdentity.of(encoder).to_json()  # type: ignore[union-attr]


def test_cli_search_with_another_model_is_refused_naming_both(
    encoder: Any, minilm: ModelIdentity, tmp_path: Path
) -> None:
    mine = ModelIdentity.of(encoder)
    backend = QdrantBackend(QdrantTarget("docs", path=str(tmp_path / "q")))
    backend.ensure_schema()
    backend.store_model(minilm.to_json())
    backend.close()

    def search(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sparsebridge.cli", "search", "--model", "splade-tiny", "--device", "cpu",
             "river", "--to", f"qdrant+local://{tmp_path / 'q'}/docs", *extra],
            capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )  # fmt: skip

    refused = search()
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"written with model {minilm}, not with {mine}" in refused.stderr, refused.stderr
    allowed = search("--allow-model-mismatch")
    assert allowed.returncode == 0, allowed.stderr
    assert "no results" in allowed.stdout


def test_qdrant_edge_records_the_model_beside_the_shard(
    encoder: Any, minilm: ModelIdentity, tmp_path: Path
) -> None:
    backend = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path / "edge"), "docs"))
    try:
        ingest(DOCS, encoder=encoder, backend=backend, batch_size=8)
        assert backend.stored_model() == ModelIdentity.of(encoder).to_json()  # type: ignore[union-attr]
        assert backend.count() == len(DOCS)  # the record beside the shard leaves the shard alone
    finally:
        backend.close()
    other = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path / "edge"), "other"))
    try:
        _refused_then_allowed(other, encoder, minilm)
    finally:
        other.close()
