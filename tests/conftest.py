"""Shared fixtures: the real models shipped in PyPI wheels, loaded once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def splade_tiny_path() -> str:
    from sparsebridge.encoder.models import resolve_model

    return resolve_model("splade-tiny")


@pytest.fixture(scope="session")
def encoder(splade_tiny_path: str):  # type: ignore[no-untyped-def]
    from sparsebridge.encoder import Encoder

    return Encoder.load(splade_tiny_path, device="cpu")


@pytest.fixture(scope="session")
def corpus() -> list[tuple[str, str]]:
    """A few hundred short synthetic documents over a small vocabulary (made here, deterministic)."""
    import random

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
    for i in range(240):
        name, words = rng.choice(list(topics.items()))
        vocab = words.split()
        n = rng.randint(6, 40)
        words_ = [rng.choice(vocab) if rng.random() < 0.5 else rng.choice(filler) for _ in range(n)]
        text = " ".join(words_)
        docs.append((f"{name}-{i}", text))
    return docs


@pytest.fixture(scope="session")
def queries() -> list[str]:
    return [
        "river flood",
        "planet orbit telescope",
        "vaccine immune response",
        "python compiler cache",
        "bread recipe flour",
        "moon",
        "server query index memory",
        "coffee and cheese",
    ]


# `make test` runs the whole suite on its default OpenSearch node, then the tests marked `opensearch`
# again on the other versions of its matrix (OPENSEARCH_VERSION, OPENSEARCH_PLUGINS: see the Makefile):
# the OpenSearch tests of these modules (whole modules, or their OpenSearch parameters only): the
# contract suite, the OpenSearch integration and hybrid tests, the dense leg, kill/resume, the 429
# storm and the write semantics (stale replays, poison items, write and flood-stage blocks).
OPENSEARCH_MATRIX_MODULES = {
    "test_backend_contract.py",
    "test_opensearch.py",
    "test_opensearch_429.py",
    "test_hybrid_opensearch.py",
    "test_dense_opensearch.py",
    "test_kill_resume.py",
    "test_429_storm.py",
    "test_write_semantics.py",
}
OPENSEARCH_FIXTURES = {
    "opensearch_url",
    "opensearch_knn_url",
    "opensearch_without_knn_url",
    "tiny_queue_node",
}


# `make test` runs the tests marked `elasticsearch` (every test that uses an Elasticsearch node, found
# by its fixtures or, outside tests/unit, its parameters) in a pass of their own on the node of
# scripts/elasticsearch.sh, and leaves them out of the OpenSearch passes.
ELASTICSEARCH_FIXTURES = {"elasticsearch_url", "tiny_queue_es_node"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs the PostgreSQL of scripts/postgres.sh (POSTGRES_URL)")
    config.addinivalue_line("markers", "opensearch: runs on every OpenSearch version of `make test`")
    config.addinivalue_line("markers", "knn: needs the OpenSearch k-NN plugin (OPENSEARCH_PLUGINS=knn)")
    config.addinivalue_line(
        "markers", "elasticsearch: needs the Elasticsearch node (scripts/elasticsearch.sh)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        params = getattr(item, "callspec", None)
        on_opensearch = bool(fixtures & OPENSEARCH_FIXTURES) or (
            params is not None and any("opensearch" in str(v) for v in params.params.values())
        )
        if item.path.name in OPENSEARCH_MATRIX_MODULES and on_opensearch:
            item.add_marker(pytest.mark.opensearch)
        if "opensearch_knn_url" in fixtures:
            item.add_marker(pytest.mark.knn)
        if "postgres_url" in fixtures or (params is not None and "postgres" in params.params.values()):
            item.add_marker(pytest.mark.postgres)
        elasticsearch_param = params is not None and any(
            str(v) == "elasticsearch" for v in params.params.values()
        )
        if fixtures & ELASTICSEARCH_FIXTURES or (elasticsearch_param and "unit" not in item.path.parts):
            item.add_marker(pytest.mark.elasticsearch)


def _get_json(url: str) -> object:
    import json
    import urllib.request

    with urllib.request.urlopen(url, timeout=15) as answer:
        return json.load(answer)


def _asked_for_knn() -> bool:
    """Whether this run's node has the k-NN plugin: OPENSEARCH_PLUGINS, as scripts/opensearch.sh reads it."""
    return "knn" in os.environ.get("OPENSEARCH_PLUGINS", "").replace(",", " ").split()


@pytest.fixture(scope="session")
def opensearch_url() -> str:
    """The OpenSearch node at OPENSEARCH_URL (``scripts/opensearch.sh start``): a failure in CI if absent.

    With OPENSEARCH_VERSION set, the node must run that version.
    """
    url = os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9250").rstrip("/")
    try:
        _get_json(f"{url}/_cluster/health?wait_for_status=yellow&timeout=10s")
        about = _get_json(url)
    except OSError as e:
        message = f"no OpenSearch node at {url} ({e}); start one with scripts/opensearch.sh start"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    version = about["version"]["number"] if isinstance(about, dict) else None
    wanted = os.environ.get("OPENSEARCH_VERSION")
    if wanted and version != wanted:
        pytest.fail(f"the node at {url} runs OpenSearch {version}, not OPENSEARCH_VERSION={wanted}")
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test PostgreSQL's URI prefix (``scripts/postgres.sh``): a failure in CI if absent."""
    from postgres_server import server_url

    return server_url()


def _node_has_knn(url: str) -> bool:
    rows = _get_json(f"{url}/_cat/plugins?format=json")
    return isinstance(rows, list) and any(row.get("component") == "opensearch-knn" for row in rows)


@pytest.fixture(scope="session")
def opensearch_knn_url(opensearch_url: str) -> str:
    """The node at OPENSEARCH_URL with the k-NN plugin, in a run started with OPENSEARCH_PLUGINS=knn.

    Other runs skip these tests (``make test`` runs them on its k-NN nodes); a run that asked for
    the plugin fails if the node lacks it.
    """
    if not _asked_for_knn():
        pytest.skip("this run's OpenSearch node has no k-NN plugin (start one with OPENSEARCH_PLUGINS=knn)")
    if not _node_has_knn(opensearch_url):
        pytest.fail(f"OPENSEARCH_PLUGINS=knn, but the node at {opensearch_url} has no opensearch-knn plugin")
    return opensearch_url


@pytest.fixture(scope="session")
def opensearch_without_knn_url(opensearch_url: str) -> str:
    """The node at OPENSEARCH_URL in a run without the k-NN plugin (the other runs skip these tests)."""
    if _asked_for_knn():
        pytest.skip("this run's OpenSearch node has the k-NN plugin")
    if _node_has_knn(opensearch_url):
        pytest.fail(f"the node at {opensearch_url} has the k-NN plugin: run with OPENSEARCH_PLUGINS=knn")
    return opensearch_url


def _tiny_queue_node(engine: str, port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second node of ``engine`` (own run dir and ports) with write pool and queue of 1: real 429s."""
    from opensearch_nodes import started_node

    prefix = engine.upper()
    settings = {f"{prefix}_EXTRA_SETTINGS": "-Ethread_pool.write.queue_size=1 -Ethread_pool.write.size=1"}
    run_dir = tmp_path_factory.mktemp(f"{engine}-429")
    with started_node(port, run_dir, what="429", env=settings, engine=engine) as (url, _):
        yield url


@pytest.fixture(scope="session")
def tiny_queue_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second OpenSearch node with write pool and queue of 1: it answers real 429s."""
    yield from _tiny_queue_node(
        "opensearch", int(os.environ.get("OPENSEARCH_429_PORT", "9251")), tmp_path_factory
    )


@pytest.fixture(scope="session")
def elasticsearch_url() -> str:
    """The Elasticsearch node at ELASTICSEARCH_URL (``scripts/elasticsearch.sh start``), required in CI.

    With ELASTICSEARCH_VERSION set, the node must run that version (read from the node info: the
    test distribution refuses ``GET /``).
    """
    url = os.environ.get("ELASTICSEARCH_URL", "http://127.0.0.1:9280").rstrip("/")
    try:
        _get_json(f"{url}/_cluster/health?wait_for_status=yellow&timeout=10s")
        nodes = _get_json(f"{url}/_nodes/_local?filter_path=nodes.*.version")
    except OSError as e:
        message = f"no Elasticsearch node at {url} ({e}); start one with scripts/elasticsearch.sh start"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    versions = [n["version"] for n in nodes["nodes"].values()] if isinstance(nodes, dict) else []
    wanted = os.environ.get("ELASTICSEARCH_VERSION")
    if wanted and versions != [wanted]:
        pytest.fail(f"the node at {url} runs Elasticsearch {versions}, not ELASTICSEARCH_VERSION={wanted}")
    return url


@pytest.fixture(scope="session")
def tiny_queue_es_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second Elasticsearch node with write pool and queue of 1: it answers real 429s."""
    port = int(os.environ.get("ELASTICSEARCH_429_PORT", "9281"))
    yield from _tiny_queue_node("elasticsearch", port, tmp_path_factory)
