"""A small HTTP server on the loopback interface that records the ``Authorization`` header of every
request: what an engine's client really sends, checked at the transport boundary.

It answers every request with one status: 200 with a body that serves as an OpenSearch or
Elasticsearch root, ``_count`` answer; or 401 with the engines' ``security_exception``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class AuthRecorder(ThreadingHTTPServer):
    def __init__(self, status: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status = status
        self.authorization: list[str | None] = []

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: AuthRecorder

    def _answer(self) -> None:
        self.server.authorization.append(self.headers.get("Authorization"))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.server.status == 401:
            body = {
                "error": {"type": "security_exception", "reason": "unable to authenticate"},
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


@contextmanager
def recording(status: int = 200) -> Iterator[AuthRecorder]:
    """A running :class:`AuthRecorder`, shut down on exit."""
    server = AuthRecorder(status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
