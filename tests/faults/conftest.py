"""Fixtures of the fault tests: a corpus, its clean-run vectors, and a second OpenSearch node we may kill."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from faultkit import NODE_PORT, SCRIPT, Corpus, Node, make_documents, write_jsonl


@pytest.fixture(scope="session")
def corpus_2k(tmp_path_factory: pytest.TempPathFactory, encoder: Any) -> Corpus:
    """2,400 documents in a JSONL file, and their vectors from one clean encode."""
    documents = make_documents(2400)
    path = write_jsonl(tmp_path_factory.mktemp("corpus") / "docs.jsonl", documents)
    vectors = encoder.encode_documents([d.text for d in documents])
    return Corpus(documents, path, {d.id: v for d, v in zip(documents, vectors, strict=True)})


@pytest.fixture(scope="session")
def fault_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node on NODE_PORT whose data survives a restart (OPENSEARCH_KEEP_DATA=1)."""
    run_dir = tmp_path_factory.mktemp("opensearch-fault")
    env = {
        **os.environ,
        "OPENSEARCH_PORT": str(NODE_PORT),
        "OPENSEARCH_TRANSPORT_PORT": str(NODE_PORT + 100),
        "OPENSEARCH_HOME_RUN": str(run_dir),
        "OPENSEARCH_KEEP_DATA": "1",
        "OPENSEARCH_JAVA_OPTS": "-Xms384m -Xmx384m",
    }
    started = subprocess.run([SCRIPT, "start"], env=env, capture_output=True, text=True, timeout=240)
    if started.returncode != 0:
        message = f"could not start the fault node: {started.stderr[-2000:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    node = Node(started.stdout.strip().splitlines()[-1], env, run_dir)
    try:
        yield node
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(node.pid(), signal.SIGCONT)
        subprocess.run([SCRIPT, "stop"], env=env, capture_output=True, text=True, timeout=120)
