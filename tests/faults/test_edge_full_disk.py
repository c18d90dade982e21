"""Qdrant Edge on a file system that runs out of space: a clear error, stats written, the run resumable.

The engine writes its files through memory maps; a page the file system cannot allocate kills the
process with SIGBUS. The test mounts a real 20 MiB tmpfs (root only) and fills it with a file
that leaves 348 KiB free, then ingests 300 documents through the CLI. Where a tmpfs cannot be
mounted (not root, no mount permission in a container) it skips, except in CI (``CI`` set), where
it fails: a full disk cannot be simulated faithfully without a file system of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from checker import read_qdrant_edge
from faultkit import cli, make_documents, write_jsonl

from sparsebridge.types import Document

FREE = 348 * 1024


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: Path, leave: int) -> Path:
    stat = os.statvfs(mount)
    filler = mount / "filler"
    with filler.open("wb") as out:
        out.write(b"\0" * (stat.f_bavail * stat.f_frsize - leave))
    return filler


def test_a_full_disk_ends_in_a_clear_error_with_stats_and_the_run_resumes(
    small_fs: Path, tmp_path: Path
) -> None:
    # ~2 KB of text each: the payload alone is more than the space left
    documents = [Document(d.id, " ".join([d.text] * 20)) for d in make_documents(300)]
    source = write_jsonl(tmp_path / "docs.jsonl", documents)
    ids = [d.id for d in documents]
    filler = _fill(small_fs, FREE)
    stats_file, run_dir = tmp_path / "stats.json", tmp_path / "run"
    args = [
        "ingest",
        "--model",
        "splade-tiny",
        "--input",
        str(source),
        "--to",
        f"qdrant+edge://{small_fs}/docs",
    ]
    args += [
        "--no-progress",
        "--batch-size",
        "32",
        "--run-dir",
        str(run_dir),
        "--stats-json",
        str(stats_file),
    ]
    process = cli(*args, cwd=tmp_path)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1, (process.returncode, err[-3000:])  # not -SIGBUS
    assert "not enough free space for the shard" in err and "then resume" in err, err[-3000:]
    stats = json.loads(stats_file.read_text())
    assert "not enough free space" in stats["error"]
    checkpoint = json.loads((run_dir / "checkpoint.json").read_text())
    assert not checkpoint["done"] and checkpoint["position"] < len(ids)

    filler.unlink()
    resumed = cli(*args, "--resume", cwd=tmp_path)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert set(read_qdrant_edge(str(small_fs / "docs"))) == set(ids)
