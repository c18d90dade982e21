"""A change to any byte of a model's weights makes it another model, and the check stays cheap.

A copy of splade-tiny with one byte of ``model.safetensors`` changed outside the first, middle
and last MiB (where the sampled fingerprint looks) is refused by ingest and by the CLI's search
into a Qdrant Edge shard written with the original.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sparsebridge.backends import MemoryBackend, QdrantEdgeBackend, QdrantEdgeTarget, model_identity
from sparsebridge.backends.model_identity import ModelIdentity, check_model, content_sha256, files_sha256
from sparsebridge.encoder import Encoder
from sparsebridge.errors import SchemaMismatchError
from sparsebridge.ingest import ingest
from sparsebridge.types import Document

DOCS = [Document(f"d{i}", f"river flood number {i}") for i in range(12)]
LATE = 15_900_000  # in model.safetensors (17.7 MB), after the middle MiB and before the last


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh digest cache, on disk and in memory."""
    monkeypatch.setenv("SPARSEBRIDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(model_identity, "_digests", {}, raising=False)
    return tmp_path / "cache" / "file-sha256"


def changed_copy(source: str, destination: Path, offset: int) -> Path:
    """A copy of the model at ``source`` with one bit of ``model.safetensors`` flipped at ``offset``."""
    shutil.copytree(source, destination)
    flip_a_bit(destination / "model.safetensors", offset)
    return destination


def flip_a_bit(weights: Path, offset: int) -> None:
    with weights.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 1]))


def test_a_late_change_to_the_weights_is_refused_by_ingest_and_search(
    tmp_path: Path, splade_tiny_path: str, encoder: Any, cache: Path
) -> None:
    with QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path / "edge"), "docs")) as backend:
        assert ingest(DOCS, encoder=encoder, backend=backend, batch_size=6).written == len(DOCS)
    copy = changed_copy(splade_tiny_path, tmp_path / "changed", LATE)
    assert files_sha256(str(copy)) == files_sha256(splade_tiny_path)  # what the sample cannot see
    changed = Encoder.load(str(copy), device="cpu")
    with QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path / "edge"), "docs")) as backend:
        with pytest.raises(SchemaMismatchError, match="content sha256"):
            ingest(DOCS, encoder=changed, backend=backend, batch_size=6)
        assert backend.count() == len(DOCS)
    search = subprocess.run(
        [sys.executable, "-m", "sparsebridge.cli", "search", "--model", str(copy), "--to",
         f"qdrant+edge://{tmp_path / 'edge'}/docs", "river"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert search.returncode != 0
    assert "was written with model" in search.stderr, search.stderr


def test_the_same_bytes_at_another_path_are_the_same_model(
    tmp_path: Path, splade_tiny_path: str, cache: Path
) -> None:
    shutil.copytree(splade_tiny_path, tmp_path / "moved")
    assert content_sha256(str(tmp_path / "moved")) == content_sha256(splade_tiny_path)


def test_the_digest_is_computed_once_and_recomputed_after_any_change(
    tmp_path: Path, splade_tiny_path: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(splade_tiny_path, copy)
    original = content_sha256(str(copy))
    [entry] = [p for p in cache.iterdir() if not p.name.startswith(".")]  # model.safetensors only
    hashed: list[str] = []
    real_hash = model_identity._hash_file
    monkeypatch.setattr(model_identity, "_hash_file", lambda path: hashed.append(path) or real_hash(path))
    assert content_sha256(str(copy)) == original
    assert not [p for p in hashed if p.endswith("model.safetensors")]  # the memory cache
    monkeypatch.setattr(model_identity, "_digests", {})
    assert content_sha256(str(copy)) == original
    assert not [p for p in hashed if p.endswith("model.safetensors")]  # the file cache
    recorded = json.loads(entry.read_text())
    entry.write_text(json.dumps({**recorded, "sha256": "0" * 64}))  # the cache is what is read
    monkeypatch.setattr(model_identity, "_digests", {})
    assert content_sha256(str(copy)) != original
    entry.write_text(json.dumps(recorded))
    monkeypatch.setattr(model_identity, "_digests", {})
    weights = copy / "model.safetensors"
    before = weights.stat()
    flip_a_bit(weights, LATE)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))  # size and mtime as before
    assert weights.stat().st_size == before.st_size and weights.stat().st_mtime_ns == before.st_mtime_ns
    assert content_sha256(str(copy)) != original
    assert [p for p in hashed if p.endswith("model.safetensors")]


def test_an_unwritable_cache_is_skipped(
    tmp_path: Path, splade_tiny_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("SPARSEBRIDGE_CACHE", str(tmp_path / "file"))  # a file: no directory under it
    monkeypatch.setattr(model_identity, "_digests", {})
    assert len(content_sha256(splade_tiny_path)) == 64


def test_identities_recorded_with_the_sampled_fingerprint_only_are_compared_by_it(
    tmp_path: Path, splade_tiny_path: str, encoder: Any, cache: Path
) -> None:
    mine = ModelIdentity.of(encoder)
    assert mine is not None and mine.content_sha256 is not None and mine.files_sha256 is not None
    older = {k: v for k, v in mine.to_json().items() if k != "content_sha256"}
    older["model"] = "/elsewhere/splade-tiny"  # recorded from another path
    recorded = ModelIdentity.from_json(older)
    assert recorded.matches(mine) and mine.matches(recorded)
    early = changed_copy(splade_tiny_path, tmp_path / "early", 1 << 19)  # inside the first MiB
    other = ModelIdentity.of(type("Named", (), {"model_name": str(early), "vocab": encoder.vocab})())
    assert other is not None and not recorded.matches(other)
    backend = MemoryBackend()
    backend.store_model(older)
    check_model(backend, mine, record=False)
    with pytest.raises(SchemaMismatchError, match="files sha256"):
        check_model(backend, other, record=False)
