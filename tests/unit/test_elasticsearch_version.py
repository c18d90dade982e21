"""The Elasticsearch client/server version rule and the choice of the exact sparse query.

A stdlib HTTP server stands in at the transport boundary: it answers like an Elasticsearch node
(a default distribution, or a reduced one that refuses ``GET /`` and lacks some queries), or like
an OpenSearch node, and records what the adapter sends. The live node checks the same on a real
Elasticsearch (tests/integration/test_elasticsearch.py).
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import elasticsearch
import pytest

from sparsebridge.backends import ClusterTarget, ElasticsearchBackend, FieldType, RetryPolicy, open_backend
from sparsebridge.backends.elasticsearch import SparseQuery, check_server_version
from sparsebridge.backends.elasticsearch.bodies import PROBE_INDEX
from sparsebridge.backends.elasticsearch.dialect import sparse_query_candidates
from sparsebridge.backends.lucene.bodies import index_body
from sparsebridge.errors import BackendError

CLIENT = elasticsearch.__versionstr__
CLIENT_MAJOR = int(CLIENT.split(".")[0])
ALL_QUERIES = ("sparse_vector", "weighted_tokens", "rank_feature")


@dataclass
class Shape:
    """What the fake node is: its version answer, whether it serves ``GET /``, the queries it parses."""

    version: dict[str, Any]
    root: bool = True
    queries: tuple[str, ...] = ALL_QUERIES
    product: str | None = "Elasticsearch"
    requests: list[tuple[str, str, Any]] = field(default_factory=list)


class FakeNode:
    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.requests = shape.requests

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _answer(self, status: int, body: Any = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if shape.product:
                    self.send_header("X-Elastic-Product", shape.product)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                body = json.loads(raw) if raw else None
                shape.requests.append((self.command, self.path, body))
                return body

            def do_GET(self) -> None:
                self._record()
                if self.path == "/" and shape.root:
                    self._answer(200, {"version": shape.version, "tagline": "You Know, for Search"})
                elif self.path == "/":
                    self._answer(405, {"error": "Incorrect HTTP method for uri [/] and method [GET]"})
                elif self.path.startswith("/_nodes/_local"):
                    self._answer(200, {"nodes": {"n1": {"version": shape.version["number"]}}})
                else:
                    self._answer(404, {"error": {"type": "not_found", "reason": self.path}})

            def do_POST(self) -> None:
                body = self._record()
                if self.path.split("?")[0].endswith("/_count"):
                    self._answer(200, {"count": 0})
                    return
                (name,) = body["query"]
                if name in shape.queries:
                    self._answer(200, {"hits": {"total": {"value": 0}, "hits": []}})
                else:
                    error = {"type": "parsing_exception", "reason": f"unknown query [{name}]"}
                    self._answer(400, {"error": {**error, "root_cause": [error]}, "status": 400})

            def do_HEAD(self) -> None:
                self._record()
                self._answer(404)

            def do_PUT(self) -> None:
                self._record()
                self._answer(200, {"acknowledged": True, "index": self.path.strip("/")})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self) -> list[tuple[str, str]]:
        return [(m, p.split("?")[0]) for m, p, _ in self.requests]


@pytest.fixture
def node(request: pytest.FixtureRequest) -> Iterator[FakeNode]:
    fake = FakeNode(request.param)
    yield fake
    fake.server.shutdown()


PROBE = ("POST", f"/{PROBE_INDEX}/_search")


@pytest.mark.parametrize("node", [Shape({"number": f"{CLIENT_MAJOR}.19.3"})], indirect=True)
def test_a_default_distribution_gets_the_sparse_vector_query_and_its_mapping(node: FakeNode) -> None:
    backend = ElasticsearchBackend(ClusterTarget("docs", url=node.url), replicas=0)
    backend.ensure_schema()
    assert backend.sparse_query is SparseQuery.SPARSE_VECTOR
    assert backend.field_type is FieldType.SPARSE_VECTOR
    assert node.paths() == [("GET", "/"), PROBE, ("HEAD", "/docs"), ("PUT", "/docs")]
    assert node.requests[1][2]["query"]["sparse_vector"]["prune"] is False
    assert node.requests[-1][2] == index_body(field="splade", field_type=FieldType.SPARSE_VECTOR, replicas=0)
    assert "sparse_vector query with prune: false" in backend.describe()
    backend.close()


@pytest.mark.parametrize(
    "node",
    [Shape({"number": f"{CLIENT_MAJOR}.15.0"}, root=False, queries=("weighted_tokens",))],
    indirect=True,
)
def test_a_reduced_node_is_read_without_get_root_and_gets_weighted_tokens(node: FakeNode) -> None:
    backend = ElasticsearchBackend(ClusterTarget("docs", url=node.url), replicas=0)
    backend.ensure_schema()
    assert backend.sparse_query is SparseQuery.WEIGHTED_TOKENS
    assert node.paths() == [
        ("GET", "/"),
        ("GET", "/_nodes/_local"),
        PROBE,  # sparse_vector: refused
        PROBE,  # weighted_tokens: parsed
        ("HEAD", "/docs"),
        ("PUT", "/docs"),
    ]
    assert backend.describe() == (
        f"Elasticsearch {CLIENT_MAJOR}.15.0; sparse_vector field, weighted_tokens query"
    )


@pytest.mark.parametrize("node", [Shape({"number": f"{CLIENT_MAJOR}.19.3"}, queries=())], indirect=True)
def test_no_exact_sparse_query_is_a_clear_error_naming_each(node: FakeNode) -> None:
    backend = ElasticsearchBackend(ClusterTarget("docs", url=node.url))
    with pytest.raises(BackendError, match="offers no exact sparse query") as raised:
        backend.ensure_schema()
    for name, provider in (
        ("sparse_vector", "ML plugin"),
        ("weighted_tokens", ""),
        ("rank_feature", "mapper-extras"),
    ):
        assert f"unknown query [{name}]" in str(raised.value) and provider in str(raised.value)
    assert ("HEAD", "/docs") not in node.paths()  # nothing written on a node that cannot search it


@pytest.mark.parametrize(
    "node", [Shape({"number": f"{CLIENT_MAJOR}.19.3"}, queries=("sparse_vector",))], indirect=True
)
def test_a_requested_field_type_limits_the_choice(node: FakeNode) -> None:
    backend = ElasticsearchBackend(ClusterTarget("docs", url=node.url), field_type=FieldType.RANK_FEATURES)
    with pytest.raises(BackendError, match=r"refused rank_feature \(the mapper-extras module\)"):
        backend.ensure_schema()
    named = ElasticsearchBackend(ClusterTarget("docs", url=node.url), sparse_query=SparseQuery.SPARSE_VECTOR)
    node.requests.clear()
    named.ensure_schema()
    assert node.paths() == [("GET", "/"), ("HEAD", "/docs"), ("PUT", "/docs")]  # named: no probe


@pytest.mark.parametrize("node", [Shape({"number": f"{CLIENT_MAJOR - 1}.15.0"})], indirect=True)
def test_another_major_is_refused_before_anything_else(node: FakeNode) -> None:
    backend = ElasticsearchBackend(ClusterTarget("docs", url=node.url))
    with pytest.raises(BackendError, match=rf"needs elasticsearch-py {CLIENT_MAJOR - 1}\.x, but {CLIENT} is"):
        backend.ensure_schema()
    assert node.paths() == [("GET", "/")]


@pytest.mark.parametrize(
    "node", [Shape({"number": "2.19.4", "distribution": "opensearch"}, product=None)], indirect=True
)
def test_opensearch_is_refused_with_a_hint(node: FakeNode) -> None:
    backend = open_backend(f"elasticsearch://{node.url.removeprefix('http://')}/docs")
    with pytest.raises(BackendError, match="use an opensearch:// target"):
        backend.ensure_schema()


@pytest.mark.parametrize("node", [Shape({"number": f"{CLIENT_MAJOR}.19.3"}, product=None)], indirect=True)
def test_the_product_check_error_says_how_to_pair_the_client(node: FakeNode) -> None:
    backend = ElasticsearchBackend(
        ClusterTarget("docs", url=node.url),
        sparse_query=SparseQuery.SPARSE_VECTOR,
        retry=RetryPolicy(max_attempts=1),
    )
    with pytest.raises(BackendError, match="whose major version equals the server's"):
        backend.count()  # the client's own request: elasticsearch-py checks the product header


def test_version_rules() -> None:
    def check(server: str, client: str) -> tuple[int, int]:
        return check_server_version({"version": {"number": server}}, client_version=client)

    assert check("9.1.0", "9.5.1") == (9, 1)
    assert check("8.15.0", "8.19.0") == (8, 15)
    with pytest.raises(BackendError, match=r"needs elasticsearch-py 8\.x"):
        check("8.19.3", "9.1.0")
    with pytest.raises(BackendError, match="did not report"):
        check_server_version({}, client_version="9.5.1")

    def candidates(server: tuple[int, int], field_type: FieldType | None = None) -> list[str]:
        return [q.value for q in sparse_query_candidates(server, field_type)]

    assert candidates((9, 1)) == ["sparse_vector", "weighted_tokens", "rank_feature"]
    assert candidates((8, 15)) == ["sparse_vector", "weighted_tokens", "rank_feature"]
    assert candidates((8, 14)) == ["rank_feature", "weighted_tokens"]  # rank_features first, as before 8.15
    assert candidates((8, 12)) == ["rank_feature"]
    assert candidates((7, 11)) == []
    assert candidates((8, 19), FieldType.SPARSE_VECTOR) == ["sparse_vector", "weighted_tokens"]
    assert candidates((8, 14), FieldType.SPARSE_VECTOR) == ["weighted_tokens"]
    assert candidates((8, 19), FieldType.RANK_FEATURES) == ["rank_feature"]
