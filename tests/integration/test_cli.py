"""The CLI end to end, in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparsebridge.types import SparseVector

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample_corpus.jsonl"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "sparsebridge.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ingest_then_search_on_the_embedded_default(tmp_path: Path) -> None:
    ingest = run(
        "ingest", "--model", "splade-tiny", "--input", str(SAMPLE), "--batch-size", "10", cwd=tmp_path
    )
    assert ingest.returncode == 0, ingest.stderr
    assert "wrote 24 documents to qdrant+edge://.sparsebridge/qdrant-edge/docs" in ingest.stdout
    assert "docs/s" in ingest.stderr  # the progress bar
    assert "the shard's segments were already optimal" in ingest.stderr  # checked: a small shard
    options = ("--no-progress", "--no-optimize")
    again = run("ingest", "--model", "splade-tiny", "--input", str(SAMPLE), *options, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "shard's segments" not in again.stderr
    search = run("search", "--model", "splade-tiny", "which planet is red", "-k", "3", cwd=tmp_path)
    assert search.returncode == 0, search.stderr
    lines = search.stdout.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].split()[2] == "space-2"
    assert "Mars is called the red planet" in lines[0]
    hybrid = run("search", "--model", "splade-tiny", "red planet", "--hybrid", "--bm25", cwd=tmp_path)
    assert hybrid.returncode != 0 and "Traceback" not in hybrid.stderr
    assert "has no BM25 text index" in hybrid.stderr and "--bm25" in hybrid.stderr


def test_the_bm25_leg_on_the_embedded_default(tmp_path: Path) -> None:
    options = ("--no-progress", "--batch-size", "10")
    ingest = run("ingest", "--model", "splade-tiny", "--input", str(SAMPLE), "--bm25", *options, cwd=tmp_path)
    assert ingest.returncode == 0, ingest.stderr
    search = run(
        "search",
        "--model",
        "splade-tiny",
        "which planet is red",
        "-k",
        "3",
        "--hybrid",
        "--bm25",
        cwd=tmp_path,
    )
    assert search.returncode == 0, search.stderr
    lines = search.stdout.strip().splitlines()
    assert len(lines) == 3
    assert {line.split()[2] for line in lines[:2]} == {"space-1", "space-2"}  # both legs rank them first


def test_encode_writes_the_public_jsonl_contract(tmp_path: Path, encoder: object) -> None:
    out = tmp_path / "vectors.jsonl"
    result = run(
        "encode", "--model", "splade-tiny", "--input", str(SAMPLE), "--output", str(out),
        "--device", "cpu,cpu", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [json.loads(line)["id"] for line in SAMPLE.read_text().splitlines()]
    assert [r["id"] for r in rows] == ids
    assert all(set(r) == {"id", "indices", "values"} for r in rows)
    texts = [json.loads(line)["text"] for line in SAMPLE.read_text().splitlines()]
    expected = encoder.encode_documents(texts)  # type: ignore[attr-defined]
    for row, vector in zip(rows, expected, strict=True):
        assert SparseVector.from_lists(row["indices"], row["values"]) == vector

    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"qid": 7, "q": "red planet"}) + "\n")
    result = run(
        "encode", "--model", "splade-tiny", "--input", str(queries), "--id-field", "qid", "--text-field", "q",
        "--output", str(out), "--queries", "--top-k", "4", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["id"] == "7" and len(row["indices"]) == 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "ok"\n', "docs.jsonl:2: malformed JSON"),
        (b'{"id": "a", "text": "ok"}\n{"id": "b"}\n', "docs.jsonl:2: field 'text' (the text) is missing"),
        (b'{"id": "a", "text": "   "}\n', "docs.jsonl:1: field 'text' (the text) is empty"),
        (b'{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "docs.jsonl:2: duplicate id 'a'"),
        (b"\n\n", "no documents"),
    ],
)
def test_bad_input_stops_encode_and_writes_nothing(tmp_path: Path, content: bytes, message: str) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_bytes(content)
    out = tmp_path / "v.jsonl"
    result = run("encode", "--model", "splade-tiny", "--input", str(docs), "--output", str(out), cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr
    assert not out.exists() and not (tmp_path / "v.jsonl.partial").exists()


def test_ingest_dead_letters_each_kind_of_bad_input_and_writes_the_rest(tmp_path: Path) -> None:
    long_text = " ".join(["river"] * 600)  # beyond splade-tiny's 512 tokens: truncated and counted
    lines = [
        b'{"id": "a", "text": "the nile is a river"}',
        b'{"id": "b", "text": "ok"',  # malformed
        b'{"id": "c"}',  # missing text
        b'{"id": "d", "text": "  \\t "}',  # whitespace text
        b'{"text": "no id"}',  # missing id
        b'{"id": "a", "text": "a second a"}',  # duplicate id
        b'{"id": "e", "text": "caf\xe9"}',  # invalid UTF-8
        b'{"id": "f", "text": "x", "score": NaN}',  # NaN metadata: not JSON
        b"[1, 2]",  # not an object
        json.dumps({"id": "g", "text": long_text}).encode(),
        b'{"id": "h", "text": "mars is the red planet"}',
    ]
    docs = tmp_path / "docs.jsonl"
    docs.write_bytes(b"\n".join(lines) + b"\n")
    common = ["ingest", "--model", "splade-tiny", "--input", str(docs), "--no-progress"]
    refused = run(*common, cwd=tmp_path)
    assert refused.returncode == 2
    assert "8 of 11 items were dead-lettered" in refused.stderr
    assert "more than the allowed fraction 0.01" in refused.stderr

    stats_path = tmp_path / "stats.json"
    result = run(
        *common, "--run-dir", "rd", "--max-dead-letter-fraction", "1", "--stats-json", str(stats_path),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "wrote 3 documents" in result.stdout
    letters = [json.loads(line) for line in (tmp_path / "rd" / "dead_letter.jsonl").read_text().splitlines()]
    assert [(d["position"], d["id"], d["type"]) for d in letters] == [
        (1, None, "malformed"),
        (2, "c", "missing_text"),
        (3, "d", "empty_text"),
        (4, None, "missing_id"),
        (5, "a", "duplicate_id"),
        (6, None, "invalid_utf8"),
        (7, None, "malformed"),
        (8, None, "not_object"),
    ]
    assert all(d["status"] is None for d in letters)
    assert all("docs.jsonl:" in d["reason"] for d in letters if d["type"] != "duplicate_id")
    stats = json.loads(stats_path.read_text())
    assert (stats["written"], stats["dead_lettered"], stats["truncated"]) == (3, 8, 1)
    checkpoint = json.loads((tmp_path / "rd" / "checkpoint.json").read_text())
    assert checkpoint["position"] == 11 and checkpoint["done"] is True

    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n\n")
    nothing = run("ingest", "--model", "splade-tiny", "--input", str(empty), cwd=tmp_path)
    assert nothing.returncode == 2 and "no documents" in nothing.stderr


def test_missing_file_unknown_model_and_unreachable_server(tmp_path: Path) -> None:
    result = run("ingest", "--model", "splade-tiny", "--input", "nope.jsonl", cwd=tmp_path)
    assert result.returncode == 2 and "nope.jsonl: input file does not exist" in result.stderr

    result = run("ingest", "--model", str(tmp_path / "no-model"), "--input", str(SAMPLE), cwd=tmp_path)
    assert result.returncode == 1 and "cannot load sparse model" in result.stderr

    result = run(
        "ingest", "--model", "splade-tiny", "--input", str(SAMPLE), "--to", "qdrant://127.0.0.1:9/docs",
        "--max-retry-seconds", "1", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "[qdrant] collection check failed after" in result.stderr

    result = run(
        "ingest", "--model", "splade-tiny", "--input", str(SAMPLE), "--to", "mysql://x/y", cwd=tmp_path
    )
    assert result.returncode == 2 and "unknown target scheme" in result.stderr


def test_search_on_a_missing_collection_is_a_clear_error(tmp_path: Path) -> None:
    result = run("search", "--model", "splade-tiny", "anything", cwd=tmp_path)
    assert result.returncode != 0
    assert "collection 'docs' does not exist (ingest into it first)" in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_ingest_reports_the_three_rates_and_memory(tmp_path: Path) -> None:
    out = tmp_path / "bench.jsonl"
    result = run(
        "bench", "ingest", "--model", "splade-tiny", "--device", "cpu", "--to", f"qdrant+local://{tmp_path}/q/b",
        "--docs", "600", "--encode-docs", "300", "--sink-docs", "300", "--batch-size", "64",
        "--output", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["docs"] == 600 and row["sink_docs"] == 300 and row["encode_docs"] == 300
    assert min(row["encode_rate"], row["sink_rate"], row["pipeline_rate"]) > 0
    assert row["overlap_efficiency"] == row["pipeline_rate"] / min(row["encode_rate"], row["sink_rate"])
    assert row["rss_peak_mib"] >= row["rss_before_mib"] > 0
