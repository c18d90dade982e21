"""The ingest process killed mid-run (SIGKILL), or stopped (SIGTERM), then resumed: no loss, no duplicates.

The CLI runs in a child process. It is killed once its checkpoint covers a quarter of the input,
then ``ingest --resume`` finishes the run; the checker reads back every id.
"""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import pytest
from checker import check, read_opensearch, read_qdrant, read_qdrant_edge
from faultkit import Corpus, cli, wait_for_position

from postgres_server import read_postgres

BATCH = "32"


def _target(kind: str, tmp_path: Path, url: str | None) -> tuple[str, str]:
    name = f"fault-kill-{uuid.uuid4().hex[:8]}"
    if kind in ("opensearch", "elasticsearch"):  # the url of that engine's node
        assert url is not None
        return f"{kind}://{url.removeprefix('http://')}/{name}", name
    if kind == "qdrant-edge":
        return f"qdrant+edge://{tmp_path}/edge/{name}", name
    if kind == "postgres":
        assert url is not None  # the server's URI prefix
        return f"{url}/{name}", name
    return f"qdrant+local://{tmp_path}/qdrant/{name}", name


def _read(kind: str, tmp_path: Path, url: str | None, name: str) -> dict[str, list[dict[int, float]]]:
    if kind in ("opensearch", "elasticsearch"):  # the same HTTP API reads both
        assert url is not None
        return read_opensearch(url, name)
    if kind == "qdrant-edge":
        return read_qdrant_edge(str(tmp_path / "edge" / name))  # the shard the killed run left
    if kind == "postgres":
        assert url is not None
        return read_postgres(url, name)
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(tmp_path / "qdrant"))  # reopens the storage the killed run left
    try:
        return read_qdrant(client, name)
    finally:
        client.close()


@pytest.fixture(params=["opensearch", "elasticsearch", "qdrant-local", "qdrant-edge", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url_for(kind: str, request: pytest.FixtureRequest) -> str | None:
    if kind in ("opensearch", "elasticsearch", "postgres"):
        return str(request.getfixturevalue(f"{kind}_url"))
    return None


def test_sigkill_mid_run_then_resume(
    kind: str, url_for: str | None, corpus_2k: Corpus, tmp_path: Path
) -> None:
    uri, name = _target(kind, tmp_path, url_for)
    run_dir = tmp_path / "run"
    args = ["ingest", "--model", "splade-tiny", "--input", str(corpus_2k.path), "--to", uri, "--no-progress"]
    args += ["--batch-size", BATCH, "--run-dir", str(run_dir)]
    process = cli(*args, cwd=tmp_path)
    total = len(corpus_2k.documents)
    killed_at = wait_for_position(run_dir, total // 4, process, timeout=120)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    checkpoint = json.loads((run_dir / "checkpoint.json").read_text())
    assert killed_at <= checkpoint["position"] < total and not checkpoint["done"], "not killed mid-run"

    # what the checkpoint says was acknowledged is there before the resume
    before = _read(kind, tmp_path, url_for, name)
    acknowledged = corpus_2k.ids[: checkpoint["position"]]
    verdict = check(before, sent=corpus_2k.ids, acknowledged=acknowledged, expected=corpus_2k.clean)
    assert verdict.clean, verdict

    resumed = cli(*args, "--resume", "--stats-json", str(tmp_path / "stats.json"), cwd=tmp_path)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["skipped"] == checkpoint["position"]
    assert stats["run_number"] == checkpoint["run_number"]
    assert stats["written"] + stats["stale"] == total - checkpoint["position"]

    verdict = check(
        _read(kind, tmp_path, url_for, name),
        sent=corpus_2k.ids,
        acknowledged=corpus_2k.ids,
        expected=corpus_2k.clean,
    )
    print(
        f"\n{kind}: killed at checkpoint {checkpoint['position']}/{total}; after resume: {verdict}; {stats}"
    )
    assert verdict.clean and verdict.present == total, verdict
    assert (run_dir / "dead_letter.jsonl").read_text() == ""


def test_sigterm_flushes_in_flight_batches_and_writes_the_checkpoint(
    opensearch_url: str, corpus_2k: Corpus, tmp_path: Path
) -> None:
    uri, name = _target("opensearch", tmp_path, opensearch_url)
    run_dir = tmp_path / "run"
    args = ["ingest", "--model", "splade-tiny", "--input", str(corpus_2k.path), "--to", uri, "--no-progress"]
    args += ["--batch-size", BATCH, "--run-dir", str(run_dir)]
    process = cli(*args, cwd=tmp_path)
    wait_for_position(run_dir, 200, process, timeout=120)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-3000:]
    assert "continue with --resume" in err
    checkpoint = json.loads((run_dir / "checkpoint.json").read_text())
    total = len(corpus_2k.documents)
    assert 200 <= checkpoint["position"] < total
    stored = read_opensearch(opensearch_url, name)
    # flushed: everything read before the signal was written, and the checkpoint covers exactly that
    assert len(stored) == checkpoint["position"]
    verdict = check(
        stored,
        sent=corpus_2k.ids,
        acknowledged=corpus_2k.ids[: checkpoint["position"]],
        expected=corpus_2k.clean,
    )
    assert verdict.clean, verdict
    resumed = cli(*args, "--resume", cwd=tmp_path)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    verdict = check(
        read_opensearch(opensearch_url, name),
        sent=corpus_2k.ids,
        acknowledged=corpus_2k.ids,
        expected=corpus_2k.clean,
    )
    assert verdict.clean and verdict.present == total, verdict
