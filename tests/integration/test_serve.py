"""``sparsebridge serve`` for real: the app under uvicorn on a loopback port, called with httpx.

splade-tiny on the CPU. Where a request must stay in flight (backpressure, graceful shutdown), a
hook on the model's input embeddings holds the forward pass until the test releases it: the states
are reached deterministically, never by timing.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
import uvicorn

from sparsebridge.backends import MemoryBackend, Record, open_backend
from sparsebridge.backends.model_identity import ModelIdentity, check_model
from sparsebridge.encoder import Encoder
from sparsebridge.encoder.dense import DenseEncoder
from sparsebridge.query import Fusion, FusionMethod
from sparsebridge.search import Searcher, SearchMode
from sparsebridge.serve.app import create_app
from sparsebridge.serve.options import API_KEY_ENV, ServeOptions
from sparsebridge.types import Document, SearchHit, SparseVector

WAIT = 60.0
TOLERANCE = 1e-5
SRC = str(Path(__file__).resolve().parents[2] / "src")


def wait_until(condition: Callable[[], bool], *, seconds: float = WAIT) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the state was never reached"
        time.sleep(0.005)


def loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class Running:
    """A uvicorn server in a thread on a free loopback port."""

    def __init__(self, app: Any) -> None:
        self.sock = loopback_socket()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=WAIT, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        wait_until(lambda: self.server.started)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT)
        assert not self.thread.is_alive()


@contextmanager
def serving(encoder: Encoder, **kwargs: Any) -> Iterator[tuple[str, httpx.Client]]:
    with (
        Running(create_app(encoder, **kwargs)) as running,
        httpx.Client(base_url=running.url, timeout=WAIT) as c,
    ):
        yield running.url, c


class Gate:
    """Holds every forward pass at the model's input embeddings while closed."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()

    def __call__(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        assert self.open.wait(WAIT)


@contextmanager
def gated(encoder: Encoder) -> Iterator[Gate]:
    gate = Gate()
    handle = encoder.model[0].auto_model.get_input_embeddings().register_forward_pre_hook(gate)
    try:
        yield gate
    finally:
        gate.open.set()
        handle.remove()


def as_vector(entries: list[dict[str, Any]]) -> SparseVector:
    assert all(set(entry) == {"index", "value"} for entry in entries)
    indices = [entry["index"] for entry in entries]
    assert indices == sorted(indices)
    return SparseVector(
        np.array(indices, dtype=np.int32), np.array([e["value"] for e in entries], np.float32)
    )


def assert_close(got: SparseVector, want: SparseVector) -> None:
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_allclose(got.values, want.values, rtol=0, atol=TOLERANCE)


def metric(client: httpx.Client, name: str, headers: dict[str, str] | None = None) -> float:
    text = client.get("/metrics", headers=headers).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


@pytest.fixture
def fresh(encoder: Encoder) -> Encoder:
    """An encoder of its own (its own coalescer and metrics listeners) over the session's model."""
    return Encoder(encoder.model)


def test_embed_sparse_speaks_tei_and_equals_encode_queries(fresh: Encoder, queries: list[str]) -> None:
    with serving(fresh) as (_, client):
        one = client.post("/embed_sparse", json={"inputs": queries[0]})
        assert one.status_code == 200, one.text
        [vector] = one.json()  # a single string still gets a list of one embedding
        assert_close(as_vector(vector), fresh.encode_queries([queries[0]])[0])
        many = client.post(
            "/embed_sparse", json={"inputs": queries, "truncate": True, "truncation_direction": "Right"}
        )
        assert many.status_code == 200, many.text
        body = many.json()
        assert len(body) == len(queries)
        for got, want in zip(body, fresh.encode_queries(queries), strict=True):
            assert_close(as_vector(got), want)
        # fields text-embeddings-inference accepts and this service has no use for are ignored
        assert client.post("/embed_sparse", json={"inputs": "moon", "normalize": False}).status_code == 200


@pytest.fixture
def prompted(fresh: Encoder) -> Iterator[Encoder]:
    """The encoder with different query and document prompts, so that the two paths differ."""
    model = fresh.model
    saved = dict(model.prompts)
    model.prompts = {"query": "query: ", "document": "passage: "}
    try:
        yield fresh
    finally:
        model.prompts = saved


def test_the_document_switch_equals_encode_documents(
    prompted: Encoder, corpus: list[tuple[str, str]]
) -> None:
    texts = [text for _, text in corpus[:5]]
    with serving(prompted, options=ServeOptions(task="document", top_k=16)) as (_, client):
        body = client.post("/embed_sparse", json={"inputs": texts}).json()
        assert client.get("/health").json()["task"] == "document"
    documents = prompted.encode_documents(texts, top_k=16)
    queries = prompted.encode_queries(texts, top_k=16)
    assert any(d != q for d, q in zip(documents, queries, strict=True))  # the paths differ here
    for got, want in zip(body, documents, strict=True):
        assert len(got) <= 16
        assert_close(as_vector(got), want)


def filled_memory(encoder: Encoder, corpus: list[tuple[str, str]]) -> MemoryBackend:
    backend = MemoryBackend()
    backend.ensure_schema()
    vectors = encoder.encode_documents([text for _, text in corpus])
    backend.write(
        [
            Record(Document(doc_id, text, {"topic": doc_id.split("-")[0]}), vector)
            for (doc_id, text), vector in zip(corpus, vectors, strict=True)
        ]
    )
    return backend


def assert_same_hits(got: list[dict[str, Any]], want: list[SearchHit]) -> None:
    assert [hit["id"] for hit in got] == [hit.id for hit in want]
    np.testing.assert_allclose([hit["score"] for hit in got], [hit.score for hit in want], rtol=1e-5)
    for hit, reference in zip(got, want, strict=True):
        assert hit["text"] == reference.payload["text"]
        assert hit["metadata"] == reference.payload["metadata"]


def test_search_returns_the_searchers_hits(
    fresh: Encoder, corpus: list[tuple[str, str]], queries: list[str]
) -> None:
    searcher = Searcher(filled_memory(fresh, corpus), fresh)
    with serving(fresh, searchers=[searcher]) as (_, client):
        for query in queries:
            response = client.post("/search", json={"query": query, "k": 7})
            assert response.status_code == 200, response.text
            assert_same_hits(response.json()["hits"], searcher.search([query], k=7)[0])
        default_k = client.post("/search", json={"query": queries[0]}).json()["hits"]
        assert len(default_k) == 10
        refused = {
            "hybrid mode not configured": {"query": "moon", "mode": "hybrid"},
            "a filter on a backend without one": {"query": "moon", "filter": {"topic": "space"}},
            "k too large": {"query": "moon", "k": 100_000},
            "k not an integer": {"query": "moon", "k": "3"},
            "an unknown field": {"query": "moon", "top_k": 3},
        }
        for why, body in refused.items():
            response = client.post("/search", json=body)
            assert response.status_code == 422, why
            assert response.json()["error_type"] == "validation", why
        assert client.post("/search", json={"query": " "}).status_code == 400


def test_hybrid_search_returns_the_hybrid_searchers_hits(
    fresh: Encoder, corpus: list[tuple[str, str]], queries: list[str]
) -> None:
    dense = DenseEncoder.load("minilm", device="cpu")
    backend = MemoryBackend()
    backend.ensure_schema()
    texts = [text for _, text in corpus]
    sparse, embeddings = fresh.encode_documents(texts), dense.encode_documents(texts)
    backend.write(
        [
            Record(Document(doc_id, text), vector, dense=embedding)
            for (doc_id, text), vector, embedding in zip(corpus, sparse, embeddings, strict=True)
        ]
    )
    fusion = Fusion(FusionMethod.RRF, k=60)
    searchers = [
        Searcher(backend, fresh),
        Searcher(backend, fresh, mode=SearchMode.HYBRID, dense_encoder=dense, fusion=fusion, candidates=50),
    ]
    with serving(fresh, searchers=searchers) as (_, client):
        assert client.get("/health").json()["search"] == ["hybrid", "sparse"]
        for query in queries:
            hybrid = client.post("/search", json={"query": query, "k": 5, "mode": "hybrid"}).json()["hits"]
            assert_same_hits(hybrid, searchers[1].search([query], k=5)[0])
            plain = client.post("/search", json={"query": query, "k": 5, "mode": "sparse"}).json()["hits"]
            assert_same_hits(plain, searchers[0].search([query], k=5)[0])


def test_search_without_a_target_is_404(fresh: Encoder) -> None:
    with serving(fresh) as (_, client):
        response = client.post("/search", json={"query": "moon"})
        assert response.status_code == 404
        assert "--to" in response.json()["error"]


def test_bad_requests_get_clear_4xx(fresh: Encoder) -> None:
    options = ServeOptions(max_inputs=3, max_body_bytes=2000)
    with serving(fresh, options=options) as (_, client):

        def post(content: bytes | None = None, **kwargs: Any) -> httpx.Response:
            return client.post("/embed_sparse", content=content, **kwargs)

        cases: list[tuple[httpx.Response, int, str]] = [
            (post(b"{not json"), 400, "not valid JSON"),
            (post(b""), 400, "empty"),
            (post(json={"inputs": []}), 400, "empty list"),
            (post(json={"inputs": "   "}), 400, "inputs is empty"),
            (post(json={"inputs": ["ok", ""]}), 400, "inputs[1] is empty"),
            (post(json={"inputs": 5}), 422, "must be a string"),
            (post(json=["moon"]), 422, "JSON object"),
            (post(json={"text": "moon"}), 422, "missing field: inputs"),
            (post(json={"inputs": "moon", "truncate": "yes"}), 422, "truncate"),
            (post(json={"inputs": "moon", "truncation_direction": "left"}), 422, "right only"),
            (post(json={"inputs": "moon", "prompt_name": "query"}), 422, "prompt_name"),
            (post(json={"inputs": ["a", "b", "c", "d"]}), 413, "the most is 3"),
            (post(json={"inputs": "word " * 1000}), 413, "larger than 2000 bytes"),
            (post(json={"inputs": "a " * 600, "truncate": False}), 413, "truncate is false"),
        ]
        for response, status, message in cases:
            assert response.status_code == status, (message, response.text)
            assert message in response.json()["error"]
        # a body sent in chunks without Content-Length is cut at the limit too
        chunks = iter([b'{"inputs": "', b"x" * 3000, b'"}'])
        assert post(content=chunks).status_code == 413
        assert client.get("/embed_sparse").status_code == 405
        # long inputs are truncated by default, as encode_queries truncates them
        assert post(json={"inputs": "a " * 600}).status_code == 200
        assert (
            metric(client, 'sparsebridge_errors_total{endpoint="embed_sparse",error_type="validation"}') >= 9
        )


def test_the_api_key_is_required_compared_and_never_echoed(fresh: Encoder) -> None:
    key = "s3cret-key-for-the-test"
    with serving(fresh, options=ServeOptions(api_key=key)) as (_, client):
        assert client.get("/health").status_code == 200  # probes need no key
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {key}"}):
            for method, path in (("POST", "/embed_sparse"), ("POST", "/search"), ("GET", "/metrics")):
                response = client.request(method, path, json={"inputs": "moon"}, headers=headers)
                assert response.status_code == 401, (headers, path)
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert key not in response.text
        good = {"Authorization": f"Bearer {key}"}
        assert client.post("/embed_sparse", json={"inputs": "moon"}, headers=good).status_code == 200
        page = client.get("/metrics", headers=good)
        assert page.status_code == 200 and key not in page.text
    assert key not in repr(ServeOptions(api_key=key))


def in_thread(call: Callable[[], httpx.Response]) -> tuple[threading.Thread, list[httpx.Response]]:
    out: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: out.append(call()))
    thread.start()
    return thread, out


def test_a_full_queue_answers_503_with_retry_after(fresh: Encoder, queries: list[str]) -> None:
    options = ServeOptions(max_queue=2, retry_after=7)
    with serving(fresh, options=options) as (url, client), gated(fresh) as gate:
        gate.open.clear()
        held = [
            in_thread(lambda q=q: httpx.post(f"{url}/embed_sparse", json={"inputs": q}, timeout=WAIT))
            for q in queries[:2]
        ]
        wait_until(lambda: metric(client, "sparsebridge_queue_depth") == 2)
        for _ in range(3):  # as long as the queue is full, every request is refused at once
            refused = client.post("/embed_sparse", json={"inputs": "one more"})
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "7"
            assert refused.json()["error_type"] == "overloaded"
        assert client.get("/health").status_code == 200  # not queued
        gate.open.set()
        for (thread, out), query in zip(held, queries[:2], strict=True):
            thread.join(WAIT)
            assert out[0].status_code == 200
            assert_close(as_vector(out[0].json()[0]), fresh.encode_queries([query])[0])
        assert metric(client, "sparsebridge_queue_depth") == 0
        assert client.post("/embed_sparse", json={"inputs": "one more"}).status_code == 200
        assert (
            metric(client, 'sparsebridge_errors_total{endpoint="embed_sparse",error_type="overloaded"}') == 3
        )
        assert metric(client, "sparsebridge_queue_limit") == 2


def test_metrics_count_requests_passes_and_latency(fresh: Encoder, queries: list[str]) -> None:
    with serving(fresh) as (_, client):
        for query in queries[:3]:
            client.post("/embed_sparse", json={"inputs": [query, query]})
        assert metric(client, 'sparsebridge_requests_total{code="200",endpoint="embed_sparse"}') == 3
        assert metric(client, 'sparsebridge_request_duration_seconds_count{endpoint="embed_sparse"}') == 3
        assert metric(client, "sparsebridge_batch_texts_sum") == 6
        assert metric(client, "sparsebridge_batch_calls_count") == 3
        assert metric(client, "sparsebridge_encode_queue_calls") == 0


def test_shutdown_finishes_the_requests_in_flight(fresh: Encoder, queries: list[str]) -> None:
    running = Running(create_app(fresh))
    with running, httpx.Client(base_url=running.url, timeout=WAIT) as client, gated(fresh) as gate:
        gate.open.clear()
        thread, out = in_thread(
            lambda: httpx.post(f"{running.url}/embed_sparse", json={"inputs": queries}, timeout=WAIT)
        )
        wait_until(lambda: metric(client, "sparsebridge_queue_depth") == 1)
        running.server.should_exit = True  # what SIGTERM does

        def refused() -> bool:
            try:
                httpx.get(f"{running.url}/health", timeout=1.0)
            except httpx.TransportError:
                return True
            return False

        wait_until(refused)  # no new connections while the request in flight is held
        assert running.thread.is_alive()
        gate.open.set()
        thread.join(WAIT)
        running.thread.join(WAIT)
        assert not running.thread.is_alive()
    assert out[0].status_code == 200
    for got, want in zip(out[0].json(), fresh.encode_queries(queries), strict=True):
        assert_close(as_vector(got), want)


def free_port() -> int:
    with loopback_socket() as sock:
        return int(sock.getsockname()[1])


def test_the_cli_serves_a_qdrant_edge_target_and_stops_on_sigterm(
    encoder: Encoder, corpus: list[tuple[str, str]], queries: list[str], tmp_path: Path
) -> None:
    uri = f"qdrant+edge://{tmp_path}/store/docs"
    vectors = encoder.encode_documents([text for _, text in corpus])
    with open_backend(uri) as backend:
        backend.ensure_schema()
        check_model(backend, ModelIdentity.of(encoder), record=True)  # as an ingest records it
        backend.write([Record(Document(i, t), v) for (i, t), v in zip(corpus, vectors, strict=True)])
        expected = {q: Searcher(backend, encoder).search([q], k=5)[0] for q in queries[:3]}
    key = "key-from-the-environment"
    port = free_port()
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1", API_KEY_ENV: key}
    command = [sys.executable, "-m", "sparsebridge.cli", "serve", "--model", "splade-tiny", "--device", "cpu"]
    command += ["--to", uri, "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        headers = {"Authorization": f"Bearer {key}"}
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert process.poll() is None, process.communicate()[0]
            try:
                return httpx.get(f"{url}/health", timeout=1.0).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, seconds=300)  # a process that imports PyTorch, on a busy machine
        assert key not in " ".join(command)
        for query, want in expected.items():
            response = httpx.post(
                f"{url}/search", json={"query": query, "k": 5}, headers=headers, timeout=WAIT
            )
            assert response.status_code == 200, response.text
            assert_same_hits(response.json()["hits"], want)
        embedded = httpx.post(
            f"{url}/embed_sparse", json={"inputs": queries[0]}, headers=headers, timeout=WAIT
        )
        assert_close(as_vector(embedded.json()[0]), encoder.encode_queries([queries[0]])[0])
        assert httpx.post(f"{url}/embed_sparse", json={"inputs": "moon"}, timeout=WAIT).status_code == 401
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # uvicorn finishes, shuts the app down, then exits by the signal it got
    assert process.returncode == -signal.SIGTERM, output
    assert "Application shutdown complete" in output
    assert key not in output
