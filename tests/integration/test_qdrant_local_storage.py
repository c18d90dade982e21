"""The one reach into qdrant-client's internals (backends/qdrant/local_storage.py) still finds its way.

If this fails, the installed qdrant-client keeps a local-mode collection's storage elsewhere: writes
stay correct but go back to several fsyncs per point. Update ``local_storage`` to the new layout.
"""

from __future__ import annotations

import sqlite3
from importlib.metadata import version
from pathlib import Path

from qdrant_client import QdrantClient, models

from sparsebridge.backends.qdrant.local_storage import DeferredSync, local_storage


def test_local_mode_keeps_each_collection_in_a_sqlite_connection_where_we_look(tmp_path: Path) -> None:
    client = QdrantClient(path=str(tmp_path))
    try:
        client.create_collection(
            "docs", vectors_config={}, sparse_vectors_config={"s": models.SparseVectorParams()}
        )
        storage = local_storage(client, "docs")
        assert isinstance(storage, sqlite3.Connection), (
            f"qdrant-client {version('qdrant-client')} no longer keeps local-mode storage at "
            "client._client.collections[name].storage.storage: update backends/qdrant/local_storage.py"
        )
        point = models.PointStruct(id=1, vector={"s": models.SparseVector(indices=[1], values=[1.0])})
        DeferredSync().run(client, "docs", lambda: client.upsert("docs", points=[point], wait=True))
        assert storage.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert storage.execute("SELECT count(*) FROM points").fetchone()[0] == 1
        assert local_storage(QdrantClient(":memory:"), "docs") is None  # another layout: None, no error
    finally:
        client.close()
