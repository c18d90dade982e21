"""Fixtures of the fault tests: a corpus, its clean-run vectors, and a second OpenSearch node we may kill."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from faultkit import NODE_PORT, Corpus, Node, make_documents, write_jsonl

from opensearch_nodes import started_node


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
    keep = {"OPENSEARCH_KEEP_DATA": "1"}
    with started_node(NODE_PORT, run_dir, what="fault", env=keep) as (url, env):
        node = Node(url, env, run_dir)
        try:
            yield node
        finally:  # a test may leave it paused: resume it so that it can be stopped
            with contextlib.suppress(OSError, ValueError):
                os.kill(node.pid(), signal.SIGCONT)
