"""The OpenSearch node itself fails mid-ingest: killed (SIGKILL) and restarted on its kept data, or
paused (SIGSTOP) past the client timeout and resumed (the "timed out but maybe applied" case).

The ingest runs in a thread with a short client timeout and a bounded retry budget; the node is a
second one (own port and run dir), so the shared test node is never touched.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from checker import check_opensearch_index
from faultkit import Node, make_documents

from sparsebridge.backends import ClusterTarget, OpenSearchBackend, Refresh, RetryPolicy
from sparsebridge.ingest import IngestStats, ingest


def _start(
    node: Node, encoder: Any, tmp_path: Path, prefix: str
) -> tuple[Any, threading.Thread, dict[str, Any]]:
    name = f"fault-node-{uuid.uuid4().hex[:8]}"
    backend = OpenSearchBackend(
        ClusterTarget(name, url=node.url),
        replicas=0,
        refresh=Refresh.NONE,
        timeout=3.0,
        retry=RetryPolicy(max_attempts=200, initial_wait=0.2, max_wait=2.0, max_total_seconds=150),
    )
    documents = make_documents(1800, seed=11, prefix=prefix)
    outcome: dict[str, Any] = {"name": name, "documents": documents, "backend": backend}

    def run() -> None:
        try:
            outcome["stats"] = ingest(
                documents, encoder=encoder, backend=backend, batch_size=32, run_dir=tmp_path / "run"
            )
        except BaseException as e:
            outcome["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return backend, thread, outcome


def _wait_for_writes(tmp_path: Path, at_least: int, thread: threading.Thread) -> None:
    import json

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and thread.is_alive():
        try:
            if json.loads((tmp_path / "run" / "checkpoint.json").read_text())["position"] >= at_least:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"the ingest did not reach {at_least} items")


def _verify(node: Node, outcome: dict[str, Any], encoder: Any) -> IngestStats:
    assert "error" not in outcome, outcome.get("error")
    stats: IngestStats = outcome["stats"]
    documents = outcome["documents"]
    verdict = check_opensearch_index(node.url, outcome["name"], documents, encoder)
    print(f"\n{verdict}; retries {stats.retries}, stale {stats.stale}, {stats.elapsed_s:.1f}s")
    assert verdict.clean and verdict.present == len(documents), verdict
    assert stats.written + stats.stale == len(documents)
    outcome["backend"].client.indices.delete(index=outcome["name"])
    outcome["backend"].close()
    return stats


def test_node_killed_and_restarted_mid_ingest(fault_node: Node, encoder: Any, tmp_path: Path) -> None:
    _, thread, outcome = _start(fault_node, encoder, tmp_path, "kill")
    _wait_for_writes(tmp_path, 300, thread)
    fault_node.kill()
    time.sleep(1.0)
    fault_node.start()  # OPENSEARCH_KEEP_DATA=1: the acknowledged writes must have survived
    thread.join(timeout=240)
    assert not thread.is_alive(), "the ingest hung"
    stats = _verify(fault_node, outcome, encoder)
    assert stats.retries > 0, "the node kill was not noticed: the fault was not produced"


def test_node_paused_past_the_client_timeout_then_resumed(
    fault_node: Node, encoder: Any, tmp_path: Path
) -> None:
    _, thread, outcome = _start(fault_node, encoder, tmp_path, "pause")
    _wait_for_writes(tmp_path, 300, thread)
    pid = fault_node.pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(8.0)  # > the 3 s client timeout: requests in flight time out, maybe applied later
    finally:
        os.kill(pid, signal.SIGCONT)
    thread.join(timeout=240)
    assert not thread.is_alive(), "the ingest hung"
    stats = _verify(fault_node, outcome, encoder)
    assert stats.retries > 0, "no request timed out: the fault was not produced"
