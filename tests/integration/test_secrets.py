"""A password in a target URI, through the real CLI: sent to the server, shown nowhere.

Nowhere means: stdout, stderr, the ``--stats-json`` file, the run directory, a ``bench ingest
--output`` record, any file the run leaves in its working directory. The secret is looked for in
its plain, percent-encoded and HTTP basic-auth (base64) forms.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from auth_recorder import AuthRecorder, recording

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample_corpus.jsonl"
USER = "admin"
PASSWORD = "Xk9:s3cr@t/pw"
ENCODED = "Xk9%3As3cr%40t%2Fpw"
FORMS = (PASSWORD, ENCODED, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(), "s3cr")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARSEBRIDGE_")}
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "sparsebridge.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_nowhere(directory: Path, *outputs: str) -> None:
    """No form of the secret in ``outputs`` or in any file under ``directory``."""
    for form in FORMS:
        for text in outputs:
            assert form not in text, f"{form!r} shown in {text[-2000:]}"
        for path in directory.rglob("*"):
            if path.is_file():
                assert form.encode() not in path.read_bytes(), f"{form!r} written to {path}"


@pytest.fixture
def refusing() -> Iterator[AuthRecorder]:
    with recording(401) as server:
        yield server


def test_a_refused_password_is_sent_and_then_shown_nowhere(tmp_path: Path, refusing: AuthRecorder) -> None:
    target = f"opensearch://{USER}:{ENCODED}@{refusing.address}/docs"
    options = ("--no-progress", "--max-retry-seconds", "1", "--stats-json", "stats.json", "--run-dir", "run")
    ingest = run(
        "ingest", "--model", "splade-tiny", "--input", str(SAMPLE), "--to", target, *options, cwd=tmp_path
    )
    assert ingest.returncode != 0
    assert "401" in ingest.stderr or "authenticat" in ingest.stderr, ingest.stderr
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert refusing.authorization and set(refusing.authorization) == {expected}
    assert (tmp_path / "stats.json").exists()
    search = run(
        "search", "--model", "splade-tiny", "--to", target, "--max-retry-seconds", "1", "red", cwd=tmp_path
    )
    assert search.returncode != 0
    assert_nowhere(tmp_path, ingest.stdout, ingest.stderr, search.stdout, search.stderr)


def test_a_bad_port_with_a_password_is_refused_without_showing_it(tmp_path: Path) -> None:
    for port in ("0", "65536", "x"):
        target = f"opensearch://{USER}:{ENCODED}@127.0.0.1:{port}/docs"
        result = run("ingest", "--model", "splade-tiny", "--input", str(SAMPLE), "--to", target, cwd=tmp_path)
        assert result.returncode != 0
        assert "port" in result.stderr, result.stderr
        assert_nowhere(tmp_path, result.stdout, result.stderr)


def test_a_password_in_the_uri_is_shown_nowhere_on_a_real_node(tmp_path: Path, opensearch_url: str) -> None:
    """The test node has no security plugin: it ignores the credentials, and the run succeeds."""
    address = opensearch_url.split("://", 1)[1]
    index = f"secret-{uuid.uuid4().hex[:8]}"
    target = f"opensearch://{USER}:{ENCODED}@{address}/{index}"
    ingest = run(
        "ingest", "--model", "splade-tiny", "--input", str(SAMPLE), "--to", target, "--no-progress",
        "--stats-json", "stats.json", "--run-dir", "run", cwd=tmp_path,
    )  # fmt: skip
    assert ingest.returncode == 0, ingest.stderr
    assert f"wrote 24 documents to opensearch://{address}/{index}" in ingest.stdout
    search = run(
        "search", "--model", "splade-tiny", "--to", target, "-k", "1", "which planet is red", cwd=tmp_path
    )
    assert search.returncode == 0, search.stderr
    assert "space-2" in search.stdout
    bench = run(
        "bench", "ingest", "--model", "splade-tiny", "--to", target, "--docs", "40", "--encode-docs", "20",
        "--sink-docs", "20", "--batch-size", "10", "--output", "bench.jsonl", cwd=tmp_path,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stderr
    [record] = [json.loads(line) for line in (tmp_path / "bench.jsonl").read_text().splitlines()]
    assert record["target"] == f"opensearch://{address}/{index}"
    assert list((tmp_path / "run").iterdir())  # the checkpoint is there to be searched
    outputs = (ingest.stdout, ingest.stderr, search.stdout, search.stderr, bench.stdout, bench.stderr)
    assert_nowhere(tmp_path, *outputs)
