"""Helpers of the fault tests: synthetic corpora, the CLI in a child process, a node we may kill."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from opensearch_nodes import SCRIPT
from sparsebridge.types import Document, SparseVector

NODE_PORT = int(os.environ.get("OPENSEARCH_FAULT_PORT", "9252"))

WORDS = (
    "river water flow delta bank flood stream valley bridge planet star orbit moon galaxy telescope "
    "rocket comet protein gene cell enzyme membrane virus vaccine immune compiler python memory thread "
    "cache index query server bread coffee cheese pasta oven sugar flour recipe"
).split()


def make_documents(n: int, *, seed: int = 5, prefix: str = "doc") -> list[Document]:
    """``n`` short synthetic documents with ids ``prefix-i`` (deterministic)."""
    rng = random.Random(seed)
    return [
        Document(f"{prefix}-{i}", " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 24))))
        for i in range(n)
    ]


def write_jsonl(path: Path, documents: list[Document]) -> Path:
    path.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in documents))
    return path


@dataclass
class Corpus:
    documents: list[Document]
    path: Path
    clean: dict[str, SparseVector]

    @property
    def ids(self) -> list[str]:
        return [d.id for d in self.documents]


def cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """Start the CLI in a child process (its own process group)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "sparsebridge.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_position(run_dir: Path, at_least: int, process: subprocess.Popen[str], timeout: float) -> int:
    """Wait until the checkpoint in ``run_dir`` covers ``at_least`` items; return its position."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            position = int(json.loads((run_dir / "checkpoint.json").read_text())["position"])
        except (OSError, ValueError, KeyError):
            position = 0
        if position >= at_least:
            return position
        if process.poll() is not None:
            _out, err = process.communicate()
            raise AssertionError(
                f"the run ended before item {at_least} (rc {process.returncode}): {err[-3000:]}"
            )
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"no checkpoint at {at_least} items within {timeout}s")


@dataclass
class Node:
    """A second OpenSearch node (own port and run dir) that a test may kill, pause and restart."""

    url: str
    env: dict[str, str]
    run_dir: Path

    def pid(self) -> int:
        return int((self.run_dir / "opensearch.pid").read_text().strip())

    def kill(self) -> None:
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)

    def start(self) -> None:
        started = subprocess.run([SCRIPT, "start"], env=self.env, capture_output=True, text=True, timeout=240)
        assert started.returncode == 0, started.stderr[-2000:]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
