"""The Elasticsearch client/server version rule.

No Elasticsearch server can run here, so a stdlib HTTP server stands in at the transport boundary:
it answers ``GET /`` like an Elasticsearch (or OpenSearch) node and records what the adapter sends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import elasticsearch
import pytest

from sparsebridge.backends import ClusterTarget, ElasticsearchBackend, FieldType, open_backend
from sparsebridge.backends.elasticsearch import check_server_version
from sparsebridge.backends.lucene.bodies import index_body
from sparsebridge.errors import BackendError

CLIENT = elasticsearch.__versionstr__
CLIENT_MAJOR = int(CLIENT.split(".")[0])


class FakeNode:
    def __init__(self, version: dict[str, Any]) -> None:
        self.version = version
        self.requests: list[tuple[str, str, Any]] = []
        node = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _answer(self, status: int, body: Any = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.headers.get("Content-Encoding") == "gzip":
                    import gzip

                    raw = gzip.decompress(raw)
                body = json.loads(raw) if raw else None
                node.requests.append((self.command, self.path, body))
                return body

            def do_GET(self) -> None:
                self._record()
                if self.path == "/":
                    self._answer(200, {"version": node.version, "tagline": "You Know, for Search"})
                else:
                    self._answer(404, {"error": {"type": "not_found", "reason": self.path}})

            def do_HEAD(self) -> None:
                self._record()
                self._answer(404)

            def do_PUT(self) -> None:
                self._record()
                self._answer(200, {"acknowledged": True, "index": self.path.strip("/")})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def node(request: pytest.FixtureRequest) -> Iterator[FakeNode]:
    fake = FakeNode(request.param)
    yield fake
    fake.server.shutdown()


@pytest.mark.parametrize("node", [{"number": f"{CLIENT_MAJOR}.1.0"}], indirect=True)
def test_matching_major_chooses_sparse_vector_and_sends_its_mapping(node: FakeNode) -> None:
    backend = ElasticsearchBackend(ClusterTarget("docs", url=node.url), replicas=0)
    backend.ensure_schema()
    assert backend.field_type is FieldType.SPARSE_VECTOR
    methods = [(m, p) for m, p, _ in node.requests]
    assert methods == [("GET", "/"), ("HEAD", "/docs"), ("PUT", "/docs")]
    assert node.requests[-1][2] == index_body(field="splade", field_type=FieldType.SPARSE_VECTOR, replicas=0)
    backend.close()


@pytest.mark.parametrize("node", [{"number": f"{CLIENT_MAJOR - 1}.15.0"}], indirect=True)
def test_another_major_is_refused_before_anything_else(node: FakeNode) -> None:
    backend = ElasticsearchBackend(ClusterTarget("docs", url=node.url))
    with pytest.raises(BackendError, match=rf"needs elasticsearch-py {CLIENT_MAJOR - 1}\.x, but {CLIENT} is"):
        backend.ensure_schema()
    assert [(m, p) for m, p, _ in node.requests] == [("GET", "/")]


@pytest.mark.parametrize("node", [{"number": "2.19.4", "distribution": "opensearch"}], indirect=True)
def test_opensearch_is_refused_with_a_hint(node: FakeNode) -> None:
    backend = open_backend(f"elasticsearch://{node.url.removeprefix('http://')}/docs")
    with pytest.raises(BackendError, match="use an opensearch:// target"):
        backend.ensure_schema()


def test_version_rules() -> None:
    def check(server: str, client: str, field_type: FieldType | None = None) -> FieldType:
        return check_server_version(
            {"version": {"number": server}}, client_version=client, field_type=field_type
        )

    assert check("9.1.0", "9.5.1") is FieldType.SPARSE_VECTOR
    assert check("8.15.0", "8.19.0") is FieldType.SPARSE_VECTOR
    assert check("8.14.3", "8.19.0") is FieldType.RANK_FEATURES
    assert check("9.1.0", "9.5.1", FieldType.RANK_FEATURES) is FieldType.RANK_FEATURES
    with pytest.raises(BackendError, match=r"needs Elasticsearch >= 8\.15"):
        check("8.14.0", "8.19.0", FieldType.SPARSE_VECTOR)
    with pytest.raises(BackendError, match=r"needs Elasticsearch >= 7\.12"):
        check("7.11.2", "7.17.0")
    with pytest.raises(BackendError, match="did not report"):
        check_server_version({}, client_version="9.5.1", field_type=None)
