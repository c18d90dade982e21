"""One deadline for every retry loop: a call that keeps failing transiently gives up after
``max_total_seconds`` (plus at most one request's timeout), and not before.

Servers: one that answers 500 to everything (forever), and the real OpenSearch node behind the
in-repo TCP proxy holding every request (a node that stopped answering, as under SIGSTOP). Bounds
are asserted with generous margins (a loaded machine); the lower bound is the deadline itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from faultkit import make_documents
from proxy import FaultProxy

from sparsebridge.backends import (
    ClusterTarget,
    OpenSearchBackend,
    QdrantBackend,
    QdrantTarget,
    Record,
    Refresh,
    RetryPolicy,
)
from sparsebridge.errors import BackendUnavailableError
from sparsebridge.ingest import ingest
from sparsebridge.types import Document, SparseVector

TIMEOUT = 2.0  # seconds per request
MARGIN = 15.0  # a loaded machine; the property is the bound, not a speed
REPO = Path(__file__).resolve().parents[2]


class _Always500(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({"error": {"type": "internal", "reason": "always failing"}, "status": 500}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def failing_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Always500)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _timed(fn: Callable[[], Any]) -> tuple[float, BaseException]:
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as info:
        fn()
    return time.monotonic() - started, info.value


def _opensearch(url: str, seconds: float, index: str = "deadline") -> OpenSearchBackend:
    policy = RetryPolicy(max_total_seconds=seconds)
    return OpenSearchBackend(
        ClusterTarget(index, url=url), timeout=TIMEOUT, retry=policy, refresh=Refresh.NONE
    )


def test_a_500_forever_server_is_retried_until_the_deadline_and_no_longer(failing_server: str) -> None:
    record = Record(Document("a", "t"), SparseVector.from_dict({5: 1.0}))
    query = SparseVector.from_dict({5: 1.0})
    seconds = 3.0
    qdrant = QdrantBackend(
        QdrantTarget("docs", url=failing_server), retry=RetryPolicy(max_total_seconds=seconds)
    )
    calls: dict[str, Callable[[], Any]] = {
        "index check": _opensearch(failing_server, seconds).ensure_schema,
        "bulk": lambda: _opensearch(failing_server, seconds).write([record]),
        "search": lambda: _opensearch(failing_server, seconds).search(query, k=3),
        "qdrant collection check": qdrant.ensure_schema,
        "qdrant search": lambda: qdrant.search(query, k=3),
    }
    for name, call in calls.items():
        elapsed, error = _timed(call)
        print(f"\n{name}: gave up after {elapsed:.1f}s: {error}")
        assert seconds <= elapsed <= seconds + TIMEOUT + MARGIN, (name, elapsed)
    qdrant.close()


def test_a_long_budget_is_used_whole(failing_server: str) -> None:
    """Six attempts (about 16-21 s of backoff) used to end the retries whatever the budget."""
    seconds = 30.0
    elapsed, error = _timed(_opensearch(failing_server, seconds).ensure_schema)
    print(f"\nindex check, {seconds:.0f}s budget: gave up after {elapsed:.1f}s: {error}")
    assert seconds <= elapsed <= seconds + TIMEOUT + MARGIN
    assert "index check failed after" in str(error)


@pytest.fixture
def proxy(opensearch_url: str) -> Iterator[FaultProxy]:
    parsed = urlparse(opensearch_url)
    with FaultProxy(parsed.hostname or "127.0.0.1", parsed.port or 9200) as p:
        yield p


def test_a_node_that_stops_answering_ends_the_ingest_within_the_bound(
    proxy: FaultProxy, encoder: Any, opensearch_url: str
) -> None:
    seconds = 4.0
    name = f"deadline-{uuid.uuid4().hex[:8]}"
    backend = _opensearch(proxy.url, seconds, name)
    backend.ensure_schema()
    proxy.faults.path, proxy.faults.hold = "/_bulk", True  # every write waits, unanswered
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match=r"after \d+ attempts in"):
        ingest(make_documents(64, seed=5, prefix="stop"), encoder=encoder, backend=backend, batch_size=16)
    elapsed = time.monotonic() - started
    print(f"\nstalled node: the ingest ended after {elapsed:.1f}s")
    assert elapsed <= seconds + TIMEOUT + MARGIN
    proxy.faults.hold = False
    backend.close()
    OpenSearchBackend(ClusterTarget(name, url=opensearch_url)).client.indices.delete(index=name)


def test_the_cli_exits_within_the_bound_when_the_node_stops_answering(
    proxy: FaultProxy, opensearch_url: str, tmp_path: Path
) -> None:
    """The process ends (error printed, exit 1) while the node is still stalled, not when it resumes."""
    name = f"deadline-cli-{uuid.uuid4().hex[:8]}"
    target = f"opensearch://127.0.0.1:{proxy.port}/{name}"
    _opensearch(proxy.url, 5, name).ensure_schema()
    proxy.faults.path, proxy.faults.hold = "/_bulk", True
    command = [
        sys.executable, "-m", "sparsebridge.cli", "ingest", "--model", "splade-tiny", "--device", "cpu",
        "--input", str(REPO / "examples" / "sample_corpus.jsonl"), "--to", target, "--no-progress",
        "--max-retry-seconds", "5", "--batch-size", "8", "--run-dir", str(tmp_path / "run"),
    ]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        _, err = process.communicate(timeout=300)  # model load + 5 s + one 30 s request, and margin
    finally:
        process.kill()
    assert process.returncode == 1, err
    assert re.search(r"after \d+ attempts in", err) and "Traceback" not in err, err[-3000:]
    proxy.faults.hold = False
    OpenSearchBackend(ClusterTarget(name, url=opensearch_url)).client.indices.delete(index=name)
