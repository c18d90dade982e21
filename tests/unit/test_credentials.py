"""Credentials given in a target URI are used or refused, never dropped, and never shown.

The transport checks run a small HTTP server on the loopback interface that records the
``Authorization`` header of every request: what the engine's client really sends.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sparsebridge.backends import ElasticsearchBackend, OpenSearchBackend, open_backend

PASSWORD = "pa:ss@w/rd"
ENCODED = "pa%3Ass%40w%2Frd"


class Recorder(ThreadingHTTPServer):
    def __init__(self, status: int = 200) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.status = status
        self.authorization: list[str | None] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def _answer(self) -> None:
        self.server.authorization.append(self.headers.get("Authorization"))
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.server.status == 401:
            body = {
                "error": {"type": "security_exception", "reason": "missing authentication"},
                "status": 401,
            }
        else:
            body = {"count": 0, "version": {"number": "8.19.3"}, "tagline": "You Know, for Search"}
        data = json.dumps(body).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_HEAD = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("scheme", ["opensearch", "elasticsearch"])
def test_credentials_in_the_uri_reach_the_server(recorder: Recorder, scheme: str) -> None:
    with open_backend(f"{scheme}://admin:{ENCODED}@{recorder.address}/docs") as backend:
        assert isinstance(backend, (OpenSearchBackend, ElasticsearchBackend))
        assert backend.count() == 0
    assert recorder.authorization and set(recorder.authorization) == {basic("admin", PASSWORD)}


def test_a_password_beside_a_user_in_the_uri_reaches_the_server(recorder: Recorder) -> None:
    with open_backend(f"opensearch://admin@{recorder.address}/docs", password=PASSWORD) as backend:
        backend.count()
    assert set(recorder.authorization) == {basic("admin", PASSWORD)}


def test_no_credentials_send_no_authorization(recorder: Recorder) -> None:
    with open_backend(f"opensearch://{recorder.address}/docs") as backend:
        backend.count()
    assert recorder.authorization and set(recorder.authorization) == {None}


def test_credentials_that_disagree_are_refused() -> None:
    with pytest.raises(ValueError, match="differ") as caught:
        open_backend(f"opensearch://admin:{ENCODED}@h/docs", password="other")
    assert PASSWORD not in str(caught.value) and "other" not in str(caught.value)
    with pytest.raises(ValueError, match="username"):
        open_backend("opensearch://admin@h/docs")  # a user without a password is not sent half-way


def test_a_qdrant_uri_with_user_information_is_refused() -> None:
    with pytest.raises(ValueError, match="api_key") as caught:
        open_backend(f"qdrant://{ENCODED}@h/docs")
    assert ENCODED not in str(caught.value)


def test_the_backend_shows_no_credentials() -> None:
    backend = open_backend(f"elasticsearch://admin:{ENCODED}@h/docs")
    assert backend.target.username == "admin"  # type: ignore[attr-defined]
    assert PASSWORD not in repr(backend.target)  # type: ignore[attr-defined]
    assert PASSWORD not in repr(backend) and ENCODED not in repr(backend)
