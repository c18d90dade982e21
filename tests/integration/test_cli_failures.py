"""Failures the CLI meets as a user does: each ends in one clear message and its exit code, no traceback.

Exit codes (``sparsebridge.cli``): 1 a backend, model or file-system failure, 2 bad usage or bad input.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparsebridge.backends import ClusterTarget, OpenSearchBackend
from sparsebridge.cli import _parser
from sparsebridge.errors import BackendError
from sparsebridge.types import SparseVector

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample_corpus.jsonl"


def run(*args: str, cwd: Path, limit_file_bytes: int | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:  # a real write failure (EFBIG) at the OS boundary, as a full disk gives ENOSPC
        if limit_file_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))

    result = subprocess.run(
        [sys.executable, "-m", "sparsebridge.cli", *args],
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def encode(
    tmp_path: Path, *extra: str, limit_file_bytes: int | None = None
) -> subprocess.CompletedProcess[str]:
    return run(
        "encode", "--model", "splade-tiny", "--device", "cpu", "--input", str(SAMPLE),
        "--output", str(tmp_path / "vectors.jsonl"), *extra, cwd=tmp_path, limit_file_bytes=limit_file_bytes,
    )  # fmt: skip


def ingest(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(
        "ingest", "--model", "splade-tiny", "--device", "cpu", "--input", str(SAMPLE), "--no-progress",
        "--to", f"qdrant+local://{tmp_path}/qdrant/docs", *extra, cwd=tmp_path,
    )  # fmt: skip


def test_encode_on_a_full_disk_says_so_and_leaves_no_partial_file(tmp_path: Path) -> None:
    result = encode(tmp_path, limit_file_bytes=8192)  # the vectors of the sample need ~60 KB
    assert result.returncode == 1, result.stderr
    assert f"cannot write {tmp_path / 'vectors.jsonl'}: File too large; nothing was written" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_encode_refuses_empty_vectors_unless_told(tmp_path: Path) -> None:
    result = encode(tmp_path, "--min-weight", "1000")
    assert result.returncode == 2, result.stderr
    assert "24 document(s) encode to an empty vector (no weight above --min-weight 1000.0)" in result.stderr
    assert "(--allow-empty-vectors writes them)" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    allowed = encode(tmp_path, "--min-weight", "1000", "--allow-empty-vectors")
    assert allowed.returncode == 0, allowed.stderr
    rows = [json.loads(line) for line in (tmp_path / "vectors.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and all(r["indices"] == [] for r in rows)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory no one may write to: a read-only tmpfs as root (root ignores modes), else mode 0555."""
    path = tmp_path / "read-only"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)], check=False)
    if mounted.returncode != 0:
        pytest.skip("root without the right to mount a read-only tmpfs: no read-only directory to test")
    yield path
    subprocess.run(["umount", str(path)], check=True)


def test_an_unwritable_run_dir_is_a_clear_error(tmp_path: Path, read_only_dir: Path) -> None:
    result = ingest(tmp_path, "--run-dir", str(read_only_dir / "run"))
    assert result.returncode == 2, result.stderr
    reason = "Permission denied" if os.geteuid() != 0 else "Read-only file system"
    assert f"{read_only_dir / 'run'}: cannot write the run directory: {reason}" in result.stderr
    (tmp_path / "a-file").write_text("x")
    result = ingest(tmp_path, "--run-dir", str(tmp_path / "a-file" / "run"))
    assert result.returncode == 2 and "cannot write the run directory: Not a directory" in result.stderr


def test_a_second_run_in_the_same_run_dir_is_refused_until_the_first_ends(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    hold = (  # another run, as far as the lock goes
        "import time; from pathlib import Path; from sparsebridge.ingest.checkpoint import RunDirLock\n"
        f"lock = RunDirLock(Path({str(run_dir)!r})); lock.__enter__()\n"
        "print('locked', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        refused = ingest(tmp_path, "--run-dir", str(run_dir))
        assert refused.returncode == 2, refused.stderr
        assert f"{run_dir}: another run is using this run directory (pid {holder.pid})" in refused.stderr
        assert not (run_dir / "checkpoint.json").exists()
    finally:
        holder.kill()  # SIGKILL: the OS releases the lock
        holder.wait()
    result = ingest(tmp_path, "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert json.loads((run_dir / "checkpoint.json").read_text())["done"] is True


def test_stats_json_is_written_when_the_run_fails(tmp_path: Path) -> None:
    stats_path = tmp_path / "stats.json"
    bad = tmp_path / "bad.jsonl"
    lines = [json.dumps({"id": f"d{i}", "text": "river flood" if i % 2 else " "}) for i in range(40)]
    bad.write_text("\n".join(lines) + "\n")
    result = run(
        "ingest", "--model", "splade-tiny", "--device", "cpu", "--input", str(bad), "--no-progress",
        "--to", f"qdrant+local://{tmp_path}/qdrant/docs", "--stats-json", str(stats_path), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    stats = json.loads(stats_path.read_text())
    assert (stats["written"], stats["dead_lettered"], stats["position"]) == (20, 20, 40)
    assert "20 of 40 items were dead-lettered" in stats["error"]

    unreachable = ingest(tmp_path, "--to", "qdrant://127.0.0.1:9/docs", "--max-retry-seconds", "0.5",
                         "--stats-json", str(stats_path))  # fmt: skip
    assert unreachable.returncode == 1
    assert "collection check failed" in json.loads(stats_path.read_text())["error"]

    missing = run(
        "ingest",
        "--model",
        "splade-tiny",
        "--input",
        "nope.jsonl",
        "--stats-json",
        str(stats_path),
        cwd=tmp_path,
    )
    assert missing.returncode == 2
    assert json.loads(stats_path.read_text()) == {"error": "nope.jsonl: input file does not exist"}

    done = ingest(tmp_path, "--stats-json", str(stats_path))
    assert done.returncode == 0, done.stderr
    stats = json.loads(stats_path.read_text())
    assert stats["error"] is None and stats["written"] == 24


@pytest.mark.parametrize(
    "argv",
    [
        ["-v", "encode", "--model", "m", "--input", "i", "--output", "o"],
        ["encode", "--model", "m", "--input", "i", "--output", "o", "-v"],
        ["search", "--model", "m", "q", "--verbose"],
        ["bench", "ingest", "--model", "m", "-v"],
    ],
)
def test_global_options_are_accepted_after_the_subcommand(argv: list[str]) -> None:
    assert _parser().parse_args(argv).verbose is True
    quiet = [a for a in argv if a not in ("-v", "--verbose")]
    assert _parser().parse_args(quiet).verbose is False


def test_search_never_creates_storage(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    result = run(
        "search", "--model", "splade-tiny", "river", "--to", f"qdrant+local://{missing}/docs", cwd=tmp_path
    )
    assert result.returncode == 1, result.stderr
    assert f"collection 'docs' does not exist (ingest into it first): no storage directory {missing}" in (
        result.stderr
    )
    assert not missing.exists()


def test_k_beyond_the_engines_result_window_says_so(opensearch_url: str) -> None:
    index = f"window-{uuid.uuid4().hex[:8]}"
    backend = OpenSearchBackend(ClusterTarget(index, url=opensearch_url), replicas=0)
    backend.ensure_schema()
    try:
        query = SparseVector.from_dict({2000: 1.0})
        for search in (backend.search, lambda q, k: backend.search_batch([q], k=k)):
            with pytest.raises(BackendError, match=r"Result window is too large.*index\.max_result_window"):
                search(query, k=100_000)
    finally:
        backend.client.indices.delete(index=index)
        backend.close()


def test_encode_reports_truncated_texts(tmp_path: Path) -> None:
    source = tmp_path / "docs.jsonl"
    rows = [{"id": "short", "text": "river flood"}, {"id": "long", "text": "river flood " * 400}]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run(
        "encode", "--model", "splade-tiny", "--device", "cpu", "--input", str(source),
        "--output", str(tmp_path / "vectors.jsonl"), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"encoded 2 texts into .*; 1 longer than the model's limit of \d+ tokens, truncated", result.stderr
    )
