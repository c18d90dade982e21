"""Credentials in a target URI reach the live node as HTTP basic auth, on every request.

The client talks to the node through the repo's TCP proxy, which keeps the head of every request:
what the client really sent. The test nodes run without security (they accept any
``Authorization``), so the header is read on the wire, not from the node's answer.
"""

from __future__ import annotations

import base64
import contextlib
import urllib.error
import urllib.request
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from proxy import FaultProxy

from sparsebridge.backends import open_backend
from sparsebridge.ingest import ingest
from sparsebridge.types import Document

USER = "reader"
PASSWORD = "pa:ss@w/rd"
ENCODED = "pa%3Ass%40w%2Frd"
DOCS = [Document(f"d{i}", f"river flood number {i}") for i in range(12)]


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch"])
def test_uri_credentials_are_sent_on_every_request(
    engine: str, encoder: Any, request: pytest.FixtureRequest
) -> None:
    url = str(request.getfixturevalue(f"{engine}_url"))
    node = urlsplit(url)
    assert node.hostname is not None and node.port is not None
    index = f"auth-{uuid.uuid4().hex[:8]}"
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    try:
        with FaultProxy(node.hostname, node.port) as proxy:
            uri = f"{engine}://{USER}:{ENCODED}@127.0.0.1:{proxy.port}/{index}"
            with open_backend(uri, replicas=0) as backend:
                ingest(DOCS, encoder=encoder, backend=backend, batch_size=4)
                [query] = encoder.encode_queries(["river flood"])
                assert backend.search(query, k=3)
                assert backend.search_text_batch(["river"], k=3)[0]  # type: ignore[attr-defined]
                assert backend.count() == len(DOCS)
            heads = [head.decode("latin-1") for head in proxy.heads]
    finally:
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(urllib.request.Request(f"{url}/{index}", method="DELETE"), timeout=30)
    lines = [head.split("\r\n", 1)[0] for head in heads]
    assert any("/_bulk" in line for line in lines) and any("/_msearch" in line for line in lines)
    if engine == "elasticsearch":  # the adapter's own requests: the version check and the query probe
        assert any(line.startswith("GET / ") for line in lines)
        assert any(line.startswith("POST /sparsebridge-probe") for line in lines)
    for head in heads:
        fields = dict(line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
        sent = {k.lower(): v for k, v in fields.items()}.get("authorization")
        assert sent == expected, head.split("\r\n", 1)[0]
    assert all(PASSWORD not in head and ENCODED not in head for head in heads)  # only the header form
