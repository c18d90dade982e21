"""The Qdrant adapter on embedded Qdrant against the exact in-memory dot product."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from sparsebridge.backends import MemoryBackend, QdrantBackend, QdrantTarget, Record, RetryPolicy
from sparsebridge.encoder import Encoder
from sparsebridge.errors import BackendUnavailableError, InputError, SchemaMismatchError
from sparsebridge.ingest import DeadLetterLimitError, ingest
from sparsebridge.types import Document, SparseVector


@pytest.fixture
def qdrant(tmp_path: Path):  # type: ignore[no-untyped-def]
    backend = QdrantBackend(QdrantTarget("docs", path=str(tmp_path / "qdrant")))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def encoded(encoder: Encoder, corpus: list[tuple[str, str]]) -> list[Record]:
    vectors = encoder.encode_documents([text for _, text in corpus])
    return [
        Record(Document(i, t, {"n": n}), v) for n, ((i, t), v) in enumerate(zip(corpus, vectors, strict=True))
    ]


def test_search_equals_exact_dot_product(
    qdrant: QdrantBackend, encoded: list[Record], encoder: Encoder, queries: list[str]
) -> None:
    exact = MemoryBackend()
    for backend in (qdrant, exact):
        backend.ensure_schema()
        backend.write(encoded)
    assert qdrant.count() == exact.count() == len(encoded)
    for query in encoder.encode_queries(queries):
        got = qdrant.search(query, k=10)
        want = exact.search(query, k=10)
        assert len(got) == len(want) == 10
        assert [h.id for h in got] == [h.id for h in want]
        for g, w in zip(got, want, strict=True):
            assert g.score == pytest.approx(w.score, rel=1e-4, abs=1e-4)
            assert g.payload["doc_id"] == g.id
    hit = qdrant.search(encoder.encode_queries([queries[0]])[0], k=1)[0]
    assert set(hit.payload) == {"doc_id", "text", "metadata"} and "n" in hit.payload["metadata"]


def test_rewrite_is_idempotent_and_delete_works(qdrant: QdrantBackend, encoded: list[Record]) -> None:
    qdrant.ensure_schema()
    qdrant.write(encoded[:50])
    qdrant.write(encoded[:50])
    assert qdrant.count() == 50
    qdrant.delete([r.document.id for r in encoded[:10]] + ["never-written"])
    assert qdrant.count() == 40


def test_collection_survives_reopen(tmp_path: Path, encoded: list[Record]) -> None:
    target = QdrantTarget("docs", path=str(tmp_path / "q"))
    first = QdrantBackend(target)
    first.ensure_schema()
    first.write(encoded[:20])
    first.close()
    again = QdrantBackend(target)
    again.ensure_schema()
    assert again.count() == 20
    again.close()


def test_an_acknowledged_write_is_in_the_database_file(tmp_path: Path, encoded: list[Record]) -> None:
    # Per-point commits skip their fsync; each write/delete ends with a checkpoint instead. The
    # database file alone (no log beside it) must hold everything acknowledged so far.
    backend = QdrantBackend(QdrantTarget("docs", path=str(tmp_path / "q")))
    backend.ensure_schema()
    [storage] = (tmp_path / "q").rglob("storage.sqlite")

    def rows_in_file() -> int:
        copy = tmp_path / "copy.sqlite"
        copy.write_bytes(storage.read_bytes())
        with closing(sqlite3.connect(copy)) as db:
            return int(db.execute("SELECT count(*) FROM points").fetchone()[0])

    for written in (60, 120, 240):
        backend.write(encoded[written // 2 : written])
        backend.write(encoded[:written])  # rewrites too
        assert rows_in_file() == written
    with closing(sqlite3.connect(storage)) as db:  # the adapter found qdrant-client's private storage
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    backend.delete([r.document.id for r in encoded[:40]])
    assert rows_in_file() == 200
    backend.close()
    again = QdrantBackend(QdrantTarget("docs", path=str(tmp_path / "q")))
    assert again.count() == 200
    again.close()


def test_points_sent_to_a_server_are_valid_upsert_bodies(encoded: list[Record]) -> None:
    # Points are built without pydantic validation; the JSON a server receives must be the same
    # as from validated models, and must validate.
    from qdrant_client.http import models
    from qdrant_client.http.api.points_api import jsonable_encoder  # what upsert_points sends

    from sparsebridge.backends.base import point_id, stored_payload
    from sparsebridge.backends.qdrant.bodies import CLIENT, plan_writes

    backend = QdrantBackend(QdrantTarget("docs", url="http://127.0.0.1:9"), dense_size=2)
    dense = np.array([0.6, 0.8], dtype=np.float32)
    records = [Record(r.document, r.vector, dense if n % 2 else None, 7) for n, r in enumerate(encoded[:20])]
    validated = [
        models.PointStruct(
            id=point_id(r.document.id),
            vector={
                "splade": models.SparseVector(
                    indices=r.vector.indices.tolist(), values=r.vector.values.tolist()
                )
            }
            | ({} if r.dense is None else {"dense": r.dense.tolist()}),
            payload=stored_payload(r.document) | {"run": 7},
        )
        for r in records
    ]
    [group] = plan_writes(records, schema=backend.schema, dialect=CLIENT)
    body = jsonable_encoder(models.PointsList(points=group.points, update_filter=group.condition))
    assert body == jsonable_encoder(models.PointsList(points=validated, update_filter=CLIENT.older_than(7)))
    assert jsonable_encoder(models.PointsList.model_validate_json(body)) == body  # a valid body
    assert backend._store.opened is None


def test_schema_mismatch_is_reported(tmp_path: Path) -> None:
    path = str(tmp_path / "q")
    plain = QdrantBackend(QdrantTarget("docs", path=path))
    plain.ensure_schema()
    plain.close()
    for options in ({"idf": True}, {"vector_name": "other"}, {"dense_size": 384}):
        backend = QdrantBackend(QdrantTarget("docs", path=path), **options)  # type: ignore[arg-type]
        with pytest.raises(SchemaMismatchError, match="exists with another schema"):
            backend.ensure_schema()
        backend.close()
    with_dense = QdrantBackend(QdrantTarget("dense", path=path), dense_size=8, idf=True)
    with_dense.ensure_schema()
    with_dense.ensure_schema()  # matches: no error
    with_dense.close()


def test_bad_records_are_rejected_before_any_io(encoded: list[Record]) -> None:
    # No client exists: anything that reached the network would fail differently.
    backend = QdrantBackend(QdrantTarget("docs", url="http://127.0.0.1:9"))
    empty = Record(Document("e", "text"), SparseVector.from_lists([], []))
    with pytest.raises(InputError, match="empty sparse vector"):
        backend.write([empty])
    with pytest.raises(InputError, match="twice"):
        backend.write([encoded[0], encoded[0]])
    with pytest.raises(TypeError):
        backend.write([("id", "vector")])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        backend.search(encoded[0].vector, k=0)
    assert backend._store.opened is None


def test_unreachable_server_fails_after_bounded_retries() -> None:
    policy = RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.02, max_total_seconds=5)
    backend = QdrantBackend(QdrantTarget("docs", url="http://127.0.0.1:9"), retry=policy)
    with pytest.raises(BackendUnavailableError, match="after 3 attempts"):
        backend.ensure_schema()


def test_ingest_pipeline_writes_everything(
    qdrant: QdrantBackend, encoder: Encoder, corpus: list[tuple[str, str]]
) -> None:
    docs = [Document(i, t) for i, t in corpus]
    seen: list[int] = []
    stats = ingest(docs, encoder=encoder, backend=qdrant, batch_size=64, on_batch=seen.append)
    assert stats.written == len(docs) == qdrant.count() == sum(seen)
    assert stats.batches == 4


def test_ingest_dead_letters_empty_vectors_and_stops_past_the_limit(
    qdrant: QdrantBackend, encoder: Encoder
) -> None:
    docs = [Document("a", "river flood"), Document("b", "planet orbit")]
    with pytest.raises(DeadLetterLimitError, match="empty vector: 2"):
        ingest(docs, encoder=encoder, backend=qdrant, min_weight=1e9)
    assert qdrant.count() == 0
    stats = ingest(docs, encoder=encoder, backend=qdrant, min_weight=1e9, max_dead_letter_fraction=1.0)
    assert stats.written == 0 and [(d.id, d.type) for d in stats.dead_letters] == [
        ("a", "empty_vector"),
        ("b", "empty_vector"),
    ]
