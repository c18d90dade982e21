"""A closed backend refuses every use with one clear error; a backend that cannot be pickled says so.

Real engines: the in-memory reference and qdrant-client's local mode (Qdrant Edge: in
tests/integration/test_qdrant_edge.py).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest

from sparsebridge.backends import Backend, MemoryBackend, QdrantBackend, QdrantTarget, Record, open_backend
from sparsebridge.errors import BackendError
from sparsebridge.types import Document, SparseVector

RECORD = Record(Document("a", "text"), SparseVector.from_dict({1: 1.0}))


def _uses(backend: Backend) -> list[Callable[[], object]]:
    return [
        backend.ensure_schema,
        backend.count,
        lambda: backend.search(RECORD.vector),
        lambda: backend.write([RECORD]),
        lambda: backend.delete(["a"]),
    ]


@pytest.mark.parametrize("kind", ["memory", "qdrant-local"])
def test_use_after_close_raises(kind: str, tmp_path: Path) -> None:
    qdrant = QdrantBackend(QdrantTarget("docs", path=str(tmp_path)))
    backend: Backend = MemoryBackend() if kind == "memory" else qdrant
    backend.ensure_schema()
    backend.write([RECORD])
    backend.close()
    backend.close()  # closing twice is fine
    for use in _uses(backend):
        with pytest.raises(BackendError, match="closed"):
            use()


def test_a_qdrant_backend_does_not_pickle_and_says_why_in_one_line(tmp_path: Path) -> None:
    with QdrantBackend(QdrantTarget("docs", path=str(tmp_path))) as backend:
        backend.ensure_schema()
        with pytest.raises(TypeError, match=r"cannot be pickled .*open a backend in each process") as raised:
            pickle.dumps(backend)
        assert "\n" not in str(raised.value) and "qdrant+local://" in str(raised.value)
    memory = pickle.loads(pickle.dumps(MemoryBackend()))  # plain data: it pickles
    assert memory.count() == 0


# Server backends: closing one that never connected is enough; every later use is refused before any
# network call (nothing listens on port 9, so a use that reached the network would fail otherwise).
SERVER_TARGETS = [
    "opensearch://127.0.0.1:9/docs",
    "elasticsearch://127.0.0.1:9/docs",
    "postgres://user@127.0.0.1:9/db/docs",
]


@pytest.mark.parametrize("uri", SERVER_TARGETS)
def test_a_closed_server_backend_refuses_every_use(uri: str) -> None:
    backend = open_backend(uri)
    backend.close()
    backend.close()  # closing twice is fine
    for use in _uses(backend):
        with pytest.raises(BackendError, match="is closed; open a new one"):
            use()


@pytest.mark.parametrize("uri", SERVER_TARGETS)
def test_a_server_backend_does_not_pickle_and_says_why_in_one_line(uri: str) -> None:
    backend = open_backend(uri.replace("user@", "user:s3cret@"))
    with pytest.raises(TypeError, match=r"cannot be pickled .*open a backend in each process") as raised:
        pickle.dumps(backend)
    backend.close()
    assert "\n" not in str(raised.value) and "s3cret" not in str(raised.value)
