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


@pytest.fixture(scope="session")
def opensearch_url() -> str:
    """The OpenSearch node at OPENSEARCH_URL (``scripts/opensearch.sh start``): a failure in CI if absent."""
    import urllib.request

    url = os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9250").rstrip("/")
    try:
        with urllib.request.urlopen(f"{url}/_cluster/health?wait_for_status=yellow&timeout=10s", timeout=15):
            pass
    except OSError as e:
        message = f"no OpenSearch node at {url} ({e}); start one with scripts/opensearch.sh start"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture(scope="session")
def tiny_queue_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second node (own run dir and ports) with write pool and queue of 1: it answers real 429s."""
    from opensearch_nodes import started_node

    port = int(os.environ.get("OPENSEARCH_429_PORT", "9251"))
    settings = {"OPENSEARCH_EXTRA_SETTINGS": "-Ethread_pool.write.queue_size=1 -Ethread_pool.write.size=1"}
    with started_node(port, tmp_path_factory.mktemp("opensearch-429"), what="429", env=settings) as (url, _):
        yield url
