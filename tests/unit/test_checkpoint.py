"""A resume continues the same run: the same target (in full) and the same input content, or a clear refusal.

The engine is embedded Qdrant (real, in-process); the one stand-in is a wrapper that fails after a
number of writes, as an unreachable engine would.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from sparsebridge.backends import (
    ClusterTarget,
    ElasticsearchBackend,
    OpenSearchBackend,
    QdrantBackend,
    QdrantTarget,
    Record,
)
from sparsebridge.errors import BackendError, InputError
from sparsebridge.ingest import JsonlSource, ingest
from sparsebridge.ingest.checkpoint import InputFingerprint, same_target, target_identity
from sparsebridge.types import WriteStats


class FailingAfter:
    """Wraps a backend (and shows its location); the write after ``n`` successful ones fails."""

    def __init__(self, inner: QdrantBackend, n: int) -> None:
        self.inner, self.left, self.name, self.location = inner, n, inner.name, inner.location

    def ensure_schema(self) -> None:
        self.inner.ensure_schema()

    def write(self, records: Sequence[Record]) -> WriteStats:
        if self.left == 0:
            raise BackendError("engine gone", backend=self.name)
        self.left -= 1
        return self.inner.write(records)

    def close(self) -> None:
        self.inner.close()


def _write_input(path: Path, n: int, *, seed: int | None = None) -> list[str]:
    ids = [f"d{i}" for i in range(n)]
    if seed is not None:
        random.Random(seed).shuffle(ids)
    words = "river planet protein compiler bread moon flood orbit".split()
    lines = [json.dumps({"id": i, "text": f"{words[int(i[1:]) % 8]} number {i[1:]:>4}"}) for i in ids]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ids


def _failed_run(encoder: Any, source: Path, storage: Path, run_dir: Path) -> None:
    backend = FailingAfter(QdrantBackend(QdrantTarget("docs", path=str(storage))), 2)
    try:
        with pytest.raises(BackendError, match="engine gone"):
            ingest(
                JsonlSource(source),
                encoder=encoder,
                backend=backend,
                batch_size=16,
                writers=1,
                run_dir=run_dir,
            )
    finally:
        backend.close()
    assert json.loads((run_dir / "checkpoint.json").read_text())["position"] == 32


def test_resume_into_another_embedded_store_is_refused(
    encoder: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, run_dir = tmp_path / "docs.jsonl", tmp_path / "run"
    _write_input(source, 100)
    _failed_run(encoder, source, tmp_path / "a", run_dir)
    other = QdrantBackend(QdrantTarget("docs", path=str(tmp_path / "b")))
    try:
        a, b = f"qdrant+local://{tmp_path / 'a'}/docs", f"qdrant+local://{tmp_path / 'b'}/docs"
        expected = f"was for target '{a}', not '{b}'"
        with pytest.raises(InputError, match=re.escape(expected)):
            ingest(
                JsonlSource(source),
                encoder=encoder,
                backend=other,
                batch_size=16,
                run_dir=run_dir,
                resume=True,
            )
    finally:
        other.close()
    # the same store, named by a relative path from elsewhere: the same target, and nothing is lost
    monkeypatch.chdir(tmp_path)
    same = QdrantBackend(QdrantTarget("docs", path="a"))
    try:
        stats = ingest(
            JsonlSource(source), encoder=encoder, backend=same, batch_size=16, run_dir=run_dir, resume=True
        )
        assert (stats.skipped, stats.written, same.count()) == (32, 68, 100)
    finally:
        same.close()


def test_resume_over_an_input_changed_at_the_same_path_is_refused(encoder: Any, tmp_path: Path) -> None:
    source, run_dir, storage = tmp_path / "docs.jsonl", tmp_path / "run", tmp_path / "q"
    _write_input(source, 100)
    _failed_run(encoder, source, storage, run_dir)
    before = source.stat()
    _write_input(source, 100, seed=3)  # the same documents in another order: the same size
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same modification time
    assert source.stat().st_size == before.st_size
    backend = QdrantBackend(QdrantTarget("docs", path=str(storage)))
    try:
        with pytest.raises(InputError, match=r"the input changed since the run in .* began \(content\)"):
            ingest(
                JsonlSource(source),
                encoder=encoder,
                backend=backend,
                batch_size=16,
                run_dir=run_dir,
                resume=True,
            )
        _write_input(source, 101)  # appended to
        with pytest.raises(InputError, match=r"began \(size \d+ -> \d+ bytes, modification time, content\)"):
            ingest(
                JsonlSource(source),
                encoder=encoder,
                backend=backend,
                batch_size=16,
                run_dir=run_dir,
                resume=True,
            )
        assert backend.count() == 32  # nothing was written by the refused resumes
    finally:
        backend.close()


def test_a_checkpoint_naming_its_target_as_engine_location_name_still_resumes(
    encoder: Any, tmp_path: Path
) -> None:
    source, run_dir, storage = tmp_path / "docs.jsonl", tmp_path / "run", tmp_path / "q"
    _write_input(source, 100)
    _failed_run(encoder, source, storage, run_dir)
    checkpoint = json.loads((run_dir / "checkpoint.json").read_text())
    assert checkpoint["target"] == f"qdrant+local://{storage}/docs"
    checkpoint["target"] = f"qdrant:{storage}/docs"  # the engine:location/name form
    (run_dir / "checkpoint.json").write_text(json.dumps(checkpoint))
    with pytest.raises(InputError, match="was for target 'qdrant:"):  # that form names one place only
        ingest(
            JsonlSource(source),
            encoder=encoder,
            backend=QdrantBackend(QdrantTarget("docs", path=str(tmp_path / "other"))),
            batch_size=16,
            run_dir=run_dir,
            resume=True,
        )
    with QdrantBackend(QdrantTarget("docs", path=str(storage))) as backend:
        stats = ingest(
            JsonlSource(source), encoder=encoder, backend=backend, batch_size=16, run_dir=run_dir, resume=True
        )
        assert (stats.skipped, stats.written, backend.count()) == (32, 68, 100)


def test_target_identity_names_scheme_host_port_and_resolved_directory(tmp_path: Path) -> None:
    def lucene(cls: Any, url: str, index: str = "docs") -> str:
        return target_identity(cls(ClusterTarget(index, url=url)))

    assert lucene(OpenSearchBackend, "http://node-a:9200") == "opensearch://node-a:9200/docs"
    assert lucene(OpenSearchBackend, "http://node-a") == "opensearch://node-a:80/docs"
    assert lucene(OpenSearchBackend, "https://node-a:9200") == "opensearch+https://node-a:9200/docs"
    assert same_target("opensearch:http://node-a:9200/docs", lucene(OpenSearchBackend, "http://node-a:9200"))
    assert not same_target(
        "opensearch:http://node-a:9200/docs", lucene(OpenSearchBackend, "http://node-b:9200")
    )
    identities = {
        lucene(OpenSearchBackend, "http://node-a:9200"),
        lucene(OpenSearchBackend, "http://node-a:9201"),
        lucene(OpenSearchBackend, "http://node-b:9200"),
        lucene(OpenSearchBackend, "https://node-a:9200"),
        lucene(OpenSearchBackend, "http://node-a:9200", "other"),
        lucene(ElasticsearchBackend, "http://node-a:9200"),
        target_identity(QdrantBackend(QdrantTarget("docs", url="http://node-a:6333"))),
        target_identity(QdrantBackend(QdrantTarget("docs", path=str(tmp_path)))),
    }
    assert len(identities) == 8


def test_input_fingerprint_sees_size_time_and_both_ends(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    block = InputFingerprint.BLOCK
    data = bytearray(b"x" * (3 * block))
    path.write_bytes(data)
    recorded = InputFingerprint.of(path).to_json()
    assert InputFingerprint.of(path).changes(recorded) == []
    stamp = path.stat()
    for offset, seen in ((0, True), (3 * block - 1, True), (block + 10, False)):  # head, tail, middle
        changed = bytearray(data)
        changed[offset] = ord("y")
        path.write_bytes(changed)
        os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        assert (InputFingerprint.of(path).changes(recorded) == ["content"]) is seen, offset
    path.touch()
    assert "modification time" in InputFingerprint.of(path).changes(recorded)
