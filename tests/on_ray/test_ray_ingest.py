"""Ingestion on Ray against single-process ingest(): the same points, the same dead letters, resume.

A real local Ray cluster, the real splade-tiny model in the encoder actors, embedded Qdrant and
the OpenSearch test node as targets; no mocks.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray.data
import torch
from qdrant_client import QdrantClient

from sparsebridge.backends import open_backend
from sparsebridge.backends.base import point_id
from sparsebridge.backends.model_identity import ModelIdentity
from sparsebridge.encoder.dense import DenseEncoder
from sparsebridge.errors import SchemaMismatchError
from sparsebridge.ingest import JsonlSource, ingest
from sparsebridge.ingest.checkpoint import Checkpoint
from sparsebridge.ingest.ray import JOURNAL_DIR, RayOptions, _table, _Work, _Writer, ray_ingest
from sparsebridge.ingest.stages import Batch, encode_batch
from sparsebridge.types import Document

WORDS = "river water flood planet orbit moon protein gene compiler cache bread coffee".split()
RUN_NUMBER = 7


def _rows(n: int) -> list[str]:
    """``n`` JSONL lines, with bad input at fixed places (the same dead letters either way)."""
    lines = [
        json.dumps(
            {"id": f"d{i}", "text": " ".join(WORDS[(i * k) % 12] for k in range(1, 6 + i % 9)), "n": i}
        )
        for i in range(n)
    ]
    lines[3] = "{not json"
    lines[8] = json.dumps({"id": "d1", "text": "a repeated id"})
    lines[11] = json.dumps({"id": "d11", "text": "   "})
    lines[15] = json.dumps(["not", "an", "object"])
    return lines


@pytest.fixture(scope="module")
def input_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ray-input") / "docs.jsonl"
    path.write_text("\n".join(_rows(120)) + "\n", encoding="utf-8")
    return path


def _qdrant_points(path: Path, collection: str = "docs") -> dict[str, tuple[Any, ...]]:
    client = QdrantClient(path=str(path))
    try:
        points, offset = client.scroll(collection, limit=10_000, with_vectors=True, with_payload=True)
        assert offset is None
    finally:
        client.close()
    out = {}
    for p in points:
        vector = p.vector["splade"]
        out[str(p.id)] = (p.payload, tuple(vector.indices), tuple(vector.values))
    return out


def _opensearch_docs(url: str, index: str) -> dict[str, Any]:
    urllib.request.urlopen(urllib.request.Request(f"{url}/{index}/_refresh", method="POST"), timeout=30)
    body = json.dumps({"size": 10_000, "version": True, "query": {"match_all": {}}}).encode()
    request = urllib.request.Request(
        f"{url}/{index}/_search", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        hits = json.load(response)["hits"]["hits"]
    return {h["_id"]: (h["_version"], h["_source"]) for h in hits}


def _delete_index(url: str, index: str) -> None:
    request = urllib.request.Request(f"{url}/{index}", method="DELETE")
    with contextlib.suppress(OSError):
        urllib.request.urlopen(request, timeout=30)


def _single_process(encoder: Any, path: Path, target: str, run_dir: Path, **options: Any) -> Any:
    """ingest() with one torch thread, as an encoder actor with one CPU has: float sums then run in
    the same order, so the vectors are equal bit for bit (not only within rounding)."""
    backend = open_backend(target, **options)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return ingest(
            JsonlSource(path),
            encoder=encoder,
            backend=backend,
            batch_size=16,
            run_dir=run_dir,
            run_number=RUN_NUMBER,
            max_dead_letter_fraction=0.1,
        )
    finally:
        torch.set_num_threads(threads)
        backend.close()


def test_ray_and_single_process_write_the_same_qdrant_points_and_dead_letters(
    ray_cluster: str, encoder: Any, input_file: Path, tmp_path: Path
) -> None:
    local = _single_process(
        encoder, input_file, f"qdrant+local://{tmp_path}/local/docs", tmp_path / "run-local"
    )
    stats = ray_ingest(
        input_file,
        model="splade-tiny",
        target=f"qdrant+local://{tmp_path}/ray/docs",
        run_dir=tmp_path / "run-ray",
        options=RayOptions(actors=2, batch_size=16),
        run_number=RUN_NUMBER,
        max_dead_letter_fraction=0.1,
    )
    assert (stats.written, stats.dead_lettered, stats.position) == (local.written, 4, 120) == (116, 4, 120)
    want = _qdrant_points(tmp_path / "local")
    got = _qdrant_points(tmp_path / "ray")
    assert len(got) == 116 and got.keys() == want.keys()
    assert got == want  # payloads (id, text, metadata, run number) and vectors, bit for bit
    letters = (tmp_path / "run-ray" / "dead_letter.jsonl").read_text()
    assert letters == (tmp_path / "run-local" / "dead_letter.jsonl").read_text()
    assert [json.loads(line)["type"] for line in letters.splitlines()] == [
        "malformed",
        "duplicate_id",
        "empty_text",
        "not_object",
    ]
    checkpoint = Checkpoint.load(tmp_path / "run-ray")
    assert checkpoint is not None and checkpoint.done and checkpoint.written == 116
    again = ray_ingest(  # a finished run has nothing left to do
        input_file,
        model="splade-tiny",
        target=f"qdrant+local://{tmp_path}/ray/docs",
        run_dir=tmp_path / "run-ray",
        resume=True,
    )
    assert again.written == 0 and again.position == 120


@pytest.fixture
def indexes(opensearch_url: str) -> Iterator[tuple[str, str]]:
    stamp = f"{os.getpid()}-{time.monotonic_ns()}"
    names = (f"sb-ray-local-{stamp}", f"sb-ray-ray-{stamp}")
    yield names
    for name in names:
        _delete_index(opensearch_url, name)


def test_ray_and_single_process_write_the_same_opensearch_documents(
    ray_cluster: str,
    encoder: Any,
    input_file: Path,
    tmp_path: Path,
    opensearch_url: str,
    indexes: tuple[str, str],
) -> None:
    host = opensearch_url.removeprefix("http://")
    local_index, ray_index = indexes
    _single_process(encoder, input_file, f"opensearch://{host}/{local_index}", tmp_path / "run-local")
    stats = ray_ingest(
        input_file,
        model="splade-tiny",
        target=f"opensearch://{host}/{ray_index}",
        run_dir=tmp_path / "run-ray",
        options=RayOptions(actors=1, batch_size=16, writers=2),
        run_number=RUN_NUMBER,
        max_dead_letter_fraction=0.1,
    )
    assert stats.written == 116
    want = _opensearch_docs(opensearch_url, local_index)
    got = _opensearch_docs(opensearch_url, ray_index)
    assert len(got) == 116 and got == want  # ids, external versions (the run number), sources


def test_a_ray_dataset_is_checked_by_the_same_rules_and_dense_comes_from_the_same_actor(
    ray_cluster: str, tmp_path: Path
) -> None:
    rows = [{"id": f"d{i}", "text": f"river planet {i}", "lang": "en"} for i in range(30)]
    rows[4] = {"id": "d4", "text": ""}
    rows[9] = {"text": "no id here"}
    rows[3] = {"id": "3", "text": "river planet three"}
    rows[12] = {"id": "3", "text": "river planet twelve"}
    dataset = ray.data.from_items(rows)
    stats = ray_ingest(
        dataset,
        model="splade-tiny",
        target=f"qdrant+local://{tmp_path}/q/docs",
        run_dir=tmp_path / "run",
        options=RayOptions(batch_size=8),
        max_dead_letter_fraction=0.2,
        dense_model="minilm",
        backend_options={"dense_size": 384},
    )
    assert (stats.written, stats.dead_lettered) == (26, 4)
    letters = [json.loads(line) for line in (tmp_path / "run" / "dead_letter.jsonl").read_text().splitlines()]
    assert sorted((d["type"], d["id"] or "") for d in letters) == [
        ("duplicate_id", "3"),  # no order in a Dataset: every row of a repeated id, none written
        ("duplicate_id", "3"),
        ("empty_text", "d4"),
        ("missing_id", ""),
    ]
    assert {d["position"] for d in letters} == {-1}
    points = _qdrant_points(tmp_path / "q")
    assert len(points) == 26 and points[point_id("d0")][0]["metadata"] == {"lang": "en"}
    assert not {point_id("3"), point_id("d3"), point_id("d12")} & set(points)
    client = QdrantClient(path=str(tmp_path / "q"))
    try:
        [point] = client.retrieve("docs", [point_id("d0")], with_vectors=True)
    finally:
        client.close()
    want = DenseEncoder.load("minilm", device="cpu").encode_documents(["river planet 0"])[0]
    assert point.vector["dense"] == pytest.approx(want.tolist(), abs=1e-5)


def _journaled(run_dir: Path) -> int:
    total = 0
    for path in (run_dir / JOURNAL_DIR).glob("*.jsonl"):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                total += len(json.loads(line)["keys"])
    return total


def test_sigkill_of_the_driver_then_resume_writes_every_id_once(
    ray_cluster: str, encoder: Any, tmp_path: Path
) -> None:
    n = 1200
    documents = [
        Document(f"k{i}", " ".join(WORDS[(i * k) % 12] for k in range(1, 5 + i % 13))) for i in range(n)
    ]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in documents))
    run_dir = tmp_path / "run"
    target = f"qdrant+local://{tmp_path}/q/docs"
    args = ["ingest", "--engine", "ray", "--ray-address", ray_cluster, "--model", "splade-tiny"]
    args += ["--input", str(path), "--to", target, "--run-dir", str(run_dir), "--batch-size", "16"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    driver = subprocess.Popen(
        [sys.executable, "-m", "sparsebridge.cli", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while _journaled(run_dir) < n // 4:
        if driver.poll() is not None:
            pytest.fail(f"the driver ended before it was killed: {driver.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, "no progress within 300 s"
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    done_before = _journaled(run_dir)
    assert done_before < n, "the run finished before the kill"
    checkpoint = Checkpoint.load(run_dir)
    assert checkpoint is not None and not checkpoint.done

    stats = _resume_when_the_store_is_free(path, target, run_dir)
    assert stats.skipped >= n // 4 and stats.position == n
    assert stats.run_number == checkpoint.run_number
    points = _qdrant_points(tmp_path / "q")
    assert len(points) == n  # every id once (point ids are derived from document ids)
    for document, vector in zip(documents, _clean_run(encoder, documents, 16), strict=True):
        payload, indices, values = points[point_id(document.id)]
        assert payload["doc_id"] == document.id and payload["run"] == checkpoint.run_number
        assert (indices, values) == (tuple(vector.indices.tolist()), tuple(vector.values.tolist()))


def _clean_run(encoder: Any, documents: list[Document], batch_size: int) -> list[Any]:
    """The vectors of an uninterrupted run: the same batches, one torch thread (as one actor)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        vectors = []
        for start in range(0, len(documents), batch_size):
            vectors += encoder.encode_documents([d.text for d in documents[start : start + batch_size]])
        return vectors
    finally:
        torch.set_num_threads(threads)


def _resume_when_the_store_is_free(path: Path, target: str, run_dir: Path) -> Any:
    """Resume; the killed driver's writer actor may hold the embedded store for a moment more."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return ray_ingest(
                path,
                model="splade-tiny",
                target=target,
                run_dir=run_dir,
                resume=True,
                options=RayOptions(batch_size=16),
            )
        except Exception as e:  # the store's lock: "already accessed by another instance"
            if "already accessed" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_the_cli_on_ray_into_qdrant_edge_optimizes_the_shard_it_wrote(
    ray_cluster: str, tmp_path: Path
) -> None:
    path = tmp_path / "docs.jsonl"
    lines = [json.dumps({"id": f"e{i}", "text": f"river planet {i}"}) for i in range(40)]
    path.write_text("\n".join(lines) + "\n")
    target = f"qdrant+edge://{tmp_path}/edge/docs"
    args = ["ingest", "--engine", "ray", "--ray-address", ray_cluster, "--model", "splade-tiny"]
    args += ["--input", str(path), "--to", target, "--run-dir", str(tmp_path / "run"), "--batch-size", "16"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "sparsebridge.cli", *args, "--no-progress"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the shard's segments were already optimal" in done.stderr  # the writer had let go of it
    backend = open_backend(target)
    try:
        assert backend.count() == 40
    finally:
        backend.close()


def test_a_writer_refuses_a_target_written_by_another_model_before_writing(
    encoder: Any, tmp_path: Path
) -> None:

    target = f"qdrant+local://{tmp_path}/q/docs"
    backend = open_backend(target)
    backend.ensure_schema()
    backend.store_model(ModelIdentity("another/model", 30522, "00" * 32).to_json())  # type: ignore[attr-defined]
    backend.close()
    batch = Batch(seq=0, end=1, docs=[(0, Document("a", "river flood"))], size=1)
    encode_batch(batch, encoder, run_number=1)
    work = _Work(batch, ["0"], [], model=ModelIdentity.of(encoder))
    writer = _Writer(target, {}, str(tmp_path / "journal"), "s", 0, False)
    with pytest.raises(SchemaMismatchError, match="another/model"):
        writer.write(_table([work]))
    writer.close()
    assert (tmp_path / "journal" / "s-0.jsonl").read_text() == ""  # nothing journaled
    assert _qdrant_points(tmp_path / "q") == {}  # nothing written
    allowed = _Writer(target, {}, str(tmp_path / "journal"), "t", 0, True)
    assert allowed.write(_table([work])) == 1
    allowed.close()
    assert len(_qdrant_points(tmp_path / "q")) == 1


def test_without_ray_the_module_names_the_extra() -> None:
    code = "import sys; sys.modules['ray'] = None\nimport sparsebridge.ingest.ray"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "MissingExtraError" in result.stderr and "pip install '.[ray]'" in result.stderr
