"""The Qdrant Edge adapter on the real engine (``qdrant-edge-py``): what is particular to it.

The shared contract (write, rewrite, delete, exact search order, schema mismatch, bad vectors) runs
in tests/contract; the kill/resume fault test in tests/faults. Here: the target, one process per
shard, durability of an acknowledged write under SIGKILL, stale counts of versioned writes, the
payload round trip, hybrid search (equal to the fusion of the same legs, to the last bit), evaluation
equal to exact scoring, and what the shard keeps beside it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sparsebridge.backends import Record, open_backend
from sparsebridge.backends.qdrant.edge import QdrantEdgeBackend, QdrantEdgeTarget
from sparsebridge.encoder import Encoder
from sparsebridge.encoder.dense import DenseEncoder
from sparsebridge.errors import BackendError, BackendUnavailableError, SchemaMismatchError
from sparsebridge.eval import BeirDataset, load_beir, run_eval
from sparsebridge.query import Fusion, FusionMethod, HybridQuery
from sparsebridge.query.fusion import fuse
from sparsebridge.types import Document, SearchHit, SparseVector

DATASET = Path(__file__).parents[1] / "data" / "minibeir"
CANDIDATES = 20


@pytest.fixture(scope="module")
def encoded(encoder: Encoder, corpus: list[tuple[str, str]]) -> list[Record]:
    vectors = encoder.encode_documents([text for _, text in corpus])
    return [
        Record(Document(i, t, {"n": n}), v) for n, ((i, t), v) in enumerate(zip(corpus, vectors, strict=True))
    ]


def test_the_target_uri_names_one_shard_directory_per_collection(tmp_path: Path) -> None:
    backend = open_backend(f"qdrant+edge://{tmp_path}/data/docs")
    assert isinstance(backend, QdrantEdgeBackend)
    assert backend.target.path == tmp_path / "data" / "docs"
    assert not (tmp_path / "data").exists()  # no I/O before use
    for bad in ("qdrant+edge://docs", "qdrant+edge:///", f"qdrant+edge://{tmp_path}/.."):
        with pytest.raises(ValueError):
            open_backend(bad)


def test_search_on_a_missing_collection_says_so_and_creates_nothing(tmp_path: Path) -> None:
    backend = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path), "nothing"))
    with pytest.raises(BackendError, match="does not exist") as raised:
        backend.search(SparseVector.from_dict({1: 1.0}))
    assert raised.value.status == 404
    with pytest.raises(BackendError, match="does not exist"):
        backend.count()
    assert list(tmp_path.iterdir()) == []


def test_a_directory_that_is_no_shard_is_refused(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("mine")
    backend = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path), "docs"))
    with pytest.raises(BackendError, match="is not a Qdrant Edge shard"):
        backend.ensure_schema()
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == ["notes.txt"]


def test_schema_mismatch_is_reported_and_the_stored_schema_kept(
    tmp_path: Path, encoded: list[Record]
) -> None:
    plain = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path), "docs"))
    plain.ensure_schema()
    plain.write(encoded[:5])
    plain.close()
    for options in ({"idf": True}, {"vector_name": "other"}, {"dense_size": 384}):
        backend = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path), "docs"), **options)  # type: ignore[arg-type]
        with pytest.raises(SchemaMismatchError, match="exists with another schema"):
            backend.ensure_schema()
        backend.close()
    again = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path), "docs"))
    again.ensure_schema()
    assert again.count() == 5
    again.close()
    for _ in range(2):  # created, then opened: matches, no error
        with QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path), "dense"), dense_size=8, idf=True) as dense:
            dense.ensure_schema()


HOLDER = textwrap.dedent(
    """
    import sys
    from sparsebridge.backends.qdrant.edge import QdrantEdgeBackend, QdrantEdgeTarget
    backend = QdrantEdgeBackend(QdrantEdgeTarget(sys.argv[1], "docs"))
    backend.ensure_schema()
    print("open", flush=True)
    sys.stdin.readline()
    backend.close()
    """
)


def test_a_second_process_gets_a_clear_error_naming_the_directory_and_the_holder(tmp_path: Path) -> None:
    # the holder's command line carries a secret: the message names its pid and program only
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    holder = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), "--api-key", "s3cret-key-value"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        backend = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path), "docs"))
        with pytest.raises(BackendUnavailableError) as raised:
            backend.count()
        message = str(raised.value)
        assert str(tmp_path / "docs") in message and f"pid {holder.pid}" in message, message
        assert "WouldBlock" not in message and "s3cret" not in message and "--api-key" not in message
        assert f"pid {holder.pid} (python" in message, message
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 0
    backend.ensure_schema()  # released by the other process's close()
    backend.close()


def test_a_second_backend_in_the_same_process_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    first = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path), "docs"))
    first.ensure_schema()
    second = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path), "docs"))
    with pytest.raises(BackendUnavailableError, match="this process"):
        second.ensure_schema()
    first.close()
    second.ensure_schema()
    second.close()


WRITER = textwrap.dedent(
    """
    import sys
    from sparsebridge.backends import Record
    from sparsebridge.backends.qdrant.edge import QdrantEdgeBackend, QdrantEdgeTarget
    from sparsebridge.types import Document, SparseVector
    backend = QdrantEdgeBackend(QdrantEdgeTarget(sys.argv[1], "docs"))
    backend.ensure_schema()
    n = 0
    while True:
        batch = [
            Record(Document(f"d{n + i}", "t"), SparseVector.from_dict({1 + i % 7: 1.0, 50: 0.5}), version=1)
            for i in range(50)
        ]
        backend.write(batch)
        n += len(batch)
        print(n, flush=True)
    """
)


def test_an_acknowledged_write_survives_sigkill_without_close(tmp_path: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    acknowledged = 0
    assert writer.stdout is not None
    for line in writer.stdout:
        acknowledged = int(line)
        if acknowledged >= 2000:
            break
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    backend = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path), "docs"))
    backend.ensure_schema()  # the WAL is replayed on load
    assert backend.count() >= acknowledged
    hits = backend.search(SparseVector.from_dict({50: 1.0}), k=acknowledged + 1000)
    assert {f"d{i}" for i in range(acknowledged)} <= {h.id for h in hits}
    backend.close()


def test_versioned_writes_count_stale_replays_and_never_overwrite(
    tmp_path: Path, encoded: list[Record]
) -> None:
    backend = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path), "docs"))
    backend.ensure_schema()
    newer = [Record(r.document, r.vector, version=2) for r in encoded[:30]]
    assert backend.write(newer).written == 30
    other = SparseVector.from_dict({99: 1.0})
    stale = [Record(Document(r.document.id, "old", {}), other, version=1) for r in encoded[:30]]
    replay = backend.write([*stale, Record(Document("fresh", "new", {}), other, version=1)])
    assert (replay.written, replay.stale) == (1, 30)  # the new id is written, the old ones refused
    same = backend.write(newer[:10])
    assert (same.written, same.stale) == (0, 10)
    [hit] = backend.search(other, k=5)
    assert hit.id == "fresh"
    assert backend.write([Record(encoded[0].document, other, version=3)]).written == 1
    assert {h.id for h in backend.search(other, k=5)} == {"fresh", encoded[0].document.id}
    backend.close()


def test_payload_round_trips_and_survives_reopen(tmp_path: Path) -> None:
    metadata = {"n": 1, "f": 0.25, "s": "é ✓", "l": [1, "a", None, True], "d": {"x": {"y": [1.5]}}, "e": {}}
    backend = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path), "docs"), dense_size=3)
    backend.ensure_schema()
    dense = np.array([0.6, 0.8, 0.0], dtype=np.float32)
    backend.write([Record(Document("a", "the text", metadata), SparseVector.from_dict({3: 2.0}), dense)])
    backend.close()
    backend = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path), "docs"), dense_size=3)
    [hit] = backend.search(SparseVector.from_dict({3: 1.5}), k=3)
    assert (hit.id, hit.score) == ("a", 3.0)
    assert hit.payload == {"doc_id": "a", "text": "the text", "metadata": metadata}
    [[dense_hit]] = backend.search_dense_batch([np.array([3.0, 4.0, 0.0], dtype=np.float32)], k=3)
    assert dense_hit.id == "a" and dense_hit.score == pytest.approx(1.0, abs=1e-6)
    backend.delete(["a", "never-written"])
    assert backend.count() == 0
    backend.close()


def test_optimize_keeps_every_point_and_every_answer(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    records = [
        Record(
            Document(f"d{i}", "t"),
            SparseVector(np.sort(rng.choice(500, 12, replace=False)), rng.random(12) + 0.1),
        )
        for i in range(2000)
    ]
    backend = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path), "docs"))
    for start in range(0, len(records), 500):
        backend.write(records[start : start + 500])
    backend.delete([r.document.id for r in records[:1000]])  # half deleted: the vacuum optimizer's case
    queries = [r.vector for r in records[::50]]
    before = backend.search_batch(queries, k=10)

    def same_answers(answers: list[list[SearchHit]]) -> bool:  # scores: float32 summed in another order
        return all(
            [h.id for h in got] == [h.id for h in want]
            and [h.score for h in got] == pytest.approx([h.score for h in want], rel=1e-6)
            for got, want in zip(answers, before, strict=True)
        )

    assert backend.optimize() is True
    assert backend.count() == 1000
    assert same_answers(backend.search_batch(queries, k=10))
    backend.close()
    again = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path), "docs"))
    assert same_answers(again.search_batch(queries, k=10))
    assert again.optimize() is False  # nothing left to do
    again.close()


@pytest.fixture(scope="module")
def dense() -> DenseEncoder:
    return DenseEncoder.load("minilm", device="cpu")


@pytest.fixture(scope="module")
def dataset() -> BeirDataset:
    return load_beir(DATASET)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, encoder, dense, dataset):  # type: ignore[no-untyped-def]
    target = QdrantEdgeTarget(str(tmp_path_factory.mktemp("edge")), "beir")
    backend = QdrantEdgeBackend(target, dense_size=dense.dimension)
    report = run_eval(dataset, encoder=encoder, backend=backend, dense_encoder=dense)
    yield backend, report
    backend.close()


def test_eval_metrics_are_identical_to_exact(evaluated) -> None:  # type: ignore[no-untyped-def]
    _, report = evaluated
    assert set(report.modes) == {"sparse", "dense", "hybrid"}
    for mode in ("sparse", "dense", "hybrid"):
        assert report.modes[mode] == report.exact[mode], mode
        assert all(v == 0 for v in report.differences()[mode].values())
    assert 0.5 < report.modes["sparse"]["ndcg@10"] <= 1.0


@pytest.fixture(scope="module")
def hybrid_queries(encoder: Encoder, dense: DenseEncoder, dataset: BeirDataset) -> list[HybridQuery]:
    texts = list(dataset.queries.values())
    return [
        HybridQuery(sparse=s, dense=d, candidates=CANDIDATES)
        for s, d in zip(encoder.encode_queries(texts), dense.encode_queries(texts), strict=True)
    ]


def edge_legs(backend: QdrantEdgeBackend, queries: list[HybridQuery]) -> list[list[list[SearchHit]]]:
    sparse = backend.search_batch([q.sparse for q in queries if q.sparse is not None], k=CANDIDATES)
    dense = backend.search_dense_batch([q.dense for q in queries if q.dense is not None], k=CANDIDATES)
    return [list(legs) for legs in zip(sparse, dense, strict=True)]


@pytest.mark.parametrize(
    "fusion",
    [Fusion(FusionMethod.RRF, k=k) for k in (60, 2, 0)] + [Fusion(FusionMethod.DBSF)],
    ids=["rrf-k60", "rrf-k2", "rrf-k0", "dbsf"],
)
def test_hybrid_equals_the_fusion_of_the_same_legs_exactly(evaluated, hybrid_queries, fusion):  # type: ignore[no-untyped-def]
    backend, _ = evaluated
    fused = backend.search_hybrid_batch(hybrid_queries, fusion, k=30)
    for got, legs in zip(fused, edge_legs(backend, hybrid_queries), strict=True):
        want = fuse(legs, fusion, limit=30)
        assert [(h.id, h.score) for h in got] == [(h.id, h.score) for h in want]


def test_weighted_sum_and_client_side_fusions(evaluated, hybrid_queries) -> None:  # type: ignore[no-untyped-def]
    backend, _ = evaluated
    for fusion in (
        Fusion(FusionMethod.SUM, weights=(0.2, 1.0)),
        Fusion(FusionMethod.RRF, k=60, weights=(2.0, 1.0)),
        Fusion(FusionMethod.ZSCORE),
    ):
        got = backend.search_hybrid_batch(hybrid_queries, fusion, k=10)
        want = [fuse(legs, fusion, limit=10) for legs in edge_legs(backend, hybrid_queries)]
        assert [[(h.id, h.score) for h in q] for q in got] == [[(h.id, h.score) for h in q] for q in want]


def test_a_shard_without_the_text_index_refuses_a_bm25_leg(evaluated, hybrid_queries) -> None:  # type: ignore[no-untyped-def]
    backend, _ = evaluated
    with pytest.raises(BackendError, match="no BM25 text index") as raised:
        backend.search_hybrid_batch(
            [HybridQuery(sparse=hybrid_queries[0].sparse, text="mars")], Fusion(), k=10
        )
    assert raised.value.status == 400
    with pytest.raises(BackendError, match="no BM25 text index"):
        backend.search_text_batch(["mars"], k=10)


@pytest.fixture(scope="module")
def with_bm25(tmp_path_factory, encoded):  # type: ignore[no-untyped-def]
    backend = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path_factory.mktemp("bm25")), "docs"), bm25=True)
    backend.write(encoded)
    yield backend
    backend.close()


def test_the_bm25_leg_ranks_documents_holding_the_query_terms(with_bm25, queries) -> None:  # type: ignore[no-untyped-def]
    found = with_bm25.search_text_batch(queries, k=10)
    for text, hits in zip(queries, found, strict=True):
        assert len(hits) == 10, text
        terms = set(text.split())
        assert all(terms & set(hit.payload["text"].split()) for hit in hits), text
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    [nothing] = with_bm25.search_text_batch(["zzzz"], k=10)
    assert nothing == []


@pytest.mark.parametrize(
    "fusion", [Fusion(FusionMethod.RRF, k=60), Fusion(FusionMethod.DBSF)], ids=["rrf", "dbsf"]
)
def test_hybrid_with_the_bm25_leg_equals_the_fusion_of_the_same_legs(with_bm25, encoder, queries, fusion):  # type: ignore[no-untyped-def]
    sparse = encoder.encode_queries(queries)
    hybrid = [
        HybridQuery(sparse=s, text=t, candidates=CANDIDATES) for s, t in zip(sparse, queries, strict=True)
    ]
    got = with_bm25.search_hybrid_batch(hybrid, fusion, k=15)
    legs = zip(
        with_bm25.search_batch(sparse, k=CANDIDATES),
        with_bm25.search_text_batch(queries, k=CANDIDATES),
        strict=True,
    )
    for fused, (sparse_leg, text_leg) in zip(got, legs, strict=True):
        want = fuse([sparse_leg, text_leg], fusion, limit=15)
        assert [(h.id, h.score) for h in fused] == [(h.id, h.score) for h in want]


def test_opening_an_existing_shard_with_bm25_builds_the_text_index(tmp_path: Path, encoded) -> None:  # type: ignore[no-untyped-def]
    target = QdrantEdgeTarget(str(tmp_path), "docs")
    with QdrantEdgeBackend(target) as plain:
        plain.write(encoded)
    with QdrantEdgeBackend(target, bm25=True) as backend:
        backend.ensure_schema()
    with QdrantEdgeBackend(target) as again:  # the index is the shard's: any later open has it
        [hits] = again.search_text_batch(["planet orbit"], k=5)
    assert len(hits) == 5


def _shard_of_300(tmp_path: Path) -> QdrantEdgeBackend:
    backend = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path), "docs"))
    records = [
        Record(Document(f"d{i}", "t"), SparseVector.from_dict({1 + i % 7: 1.0, 50: 0.5})) for i in range(300)
    ]
    for start in range(0, len(records), 32):  # as an ingest writes: batch by batch
        backend.write(records[start : start + 32])
    return backend


def test_a_damaged_shard_is_reported_not_served(tmp_path: Path) -> None:
    _shard_of_300(tmp_path).close()
    [mappings] = (tmp_path / "docs" / "segments").glob("*/mutable_id_tracker.mappings")
    assert mappings.stat().st_size == 6300
    with mappings.open("r+b") as handle:  # a cleanly closed shard loses part of its id tracker
        handle.truncate(3000)
    backend = QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path), "docs"))
    with pytest.raises(BackendError, match=r"is damaged: it holds \d+ points, but held 300 when it was last"):
        backend.search(SparseVector.from_dict({50: 1.0}))
    with pytest.raises(BackendError, match="is damaged"):
        backend.count()
    backend.close()


def test_a_shard_with_points_and_no_model_record_is_refused_unless_allowed(
    tmp_path: Path, encoder: Encoder
) -> None:
    from sparsebridge.backends.model_identity import ModelIdentity, check_model

    identity = ModelIdentity.of(encoder)
    backend = _shard_of_300(tmp_path)
    record = tmp_path / ".docs.sparsebridge-model.json"
    for damage in ("emptied", "deleted"):
        if damage == "emptied":
            record.write_text("{}")
        else:
            record.unlink()
        for store in (False, True):  # a search, an ingest
            with pytest.raises(SchemaMismatchError, match="records no model"):
                check_model(backend, identity, record=store)
            check_model(backend, identity, record=store, allow_mismatch=True)
    backend.delete([f"d{i}" for i in range(300)])
    check_model(backend, identity, record=True)  # an empty shard: its first ingest records the model
    assert backend.stored_model() == identity.to_json()  # type: ignore[union-attr]
    backend.close()


def test_use_after_close_is_refused_and_nothing_reopens(tmp_path: Path) -> None:
    import pickle

    backend = _shard_of_300(tmp_path)
    with pytest.raises(TypeError, match="cannot be pickled") as raised:
        pickle.dumps(backend)
    assert "\n" not in str(raised.value)
    backend.close()
    backend.close()  # closing twice is fine
    for use in (
        backend.ensure_schema,
        backend.count,
        backend.optimize,
        lambda: backend.search(SparseVector.from_dict({50: 1.0})),
        lambda: backend.write([Record(Document("x", "t"), SparseVector.from_dict({1: 1.0}))]),
        lambda: backend.delete(["d1"]),
    ):
        with pytest.raises(BackendError, match="is closed; open a new one"):
            use()
    with QdrantEdgeBackend(QdrantEdgeTarget(str(tmp_path), "docs")) as again:  # the shard is free
        assert again.count() == 300


COLD = "index=cold&payload=cold&ids=cold"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("index=warm", "must be one of pinned, cached, cold"),
        ("vectors=cold", "unknown Qdrant Edge storage option 'vectors'"),
        ("values=int4", "must be one of float32, float16, uint8"),
        ("payload=pinned", "payload=pinned is not available"),
        ("index=cold&index=cached", "given twice"),
        ("index", "is not key=value"),
    ],
)
def test_bad_storage_options_are_refused_before_anything_is_written(
    tmp_path: Path, query: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        open_backend(f"qdrant+edge://{tmp_path}/data/docs?{query}")
    assert list(tmp_path.iterdir()) == []


def test_storage_options_are_recorded_reapplied_and_contradictions_refused(tmp_path: Path, encoded) -> None:  # type: ignore[no-untyped-def]
    uri = f"qdrant+edge://{tmp_path}/docs"
    with open_backend(f"{uri}?{COLD}&values=float16") as backend:
        backend.write(encoded)
        [want] = backend.search_batch([encoded[0].vector], k=10)  # type: ignore[attr-defined]
    config = json.loads((tmp_path / "docs" / "edge_config.json").read_text())
    with open_backend(uri) as again:  # no options: the recorded ones, not the engine's defaults
        [got] = again.search_batch([encoded[0].vector], k=10)  # type: ignore[attr-defined]
    assert [(h.id, h.score) for h in got] == [(h.id, h.score) for h in want]
    assert json.loads((tmp_path / "docs" / "edge_config.json").read_text()) == config
    assert config["sparse_vectors"]["splade"] == {"memory": "cold", "datatype": "float16"}
    assert (config["payload_memory"], config["id_tracker_memory"]) == ("cold", "cold")
    for other in (COLD, "index=cold", f"{COLD}&values=float32"):
        with pytest.raises(SchemaMismatchError, match="was created with the storage options"):
            open_backend(f"{uri}?{other}").count()  # type: ignore[attr-defined]
    assert json.loads((tmp_path / "docs" / "edge_config.json").read_text()) == config


def test_writes_roll_the_shard_over_and_queries_meanwhile_see_it_open(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from sparsebridge.backends.qdrant import edge

    monkeypatch.setattr(edge, "ROLLOVER_POINTS", 100)
    reopened = []
    load = edge.qdrant_edge_module().EdgeShard.load
    monkeypatch.setattr(edge, "qdrant_edge_module", lambda: _Spy(load, reopened))
    backend = QdrantEdgeBackend(
        QdrantEdgeTarget(str(tmp_path), "docs"),
        storage=edge.EdgeStorage.parse({"index": "cold", "payload": "cold", "ids": "cold"}),
    )
    records = [
        Record(Document(f"d{i}", "t"), SparseVector.from_dict({1 + i % 7: 1.0, 50: 0.5})) for i in range(1000)
    ]
    backend.write(records[:10])
    failures: list[BaseException] = []
    stop = threading.Event()

    def query() -> None:
        while not stop.is_set():
            try:
                assert len(backend.search(SparseVector.from_dict({50: 1.0}), k=5)) == 5
            except BaseException as e:
                failures.append(e)
                return

    reader = threading.Thread(target=query)
    reader.start()
    for start in range(10, len(records), 30):
        assert _QUERYING.wait(timeout=10), failures  # each write (rollovers too) meets a query in flight
        _QUERYING.clear()
        backend.write(records[start : start + 30])
    stop.set()
    reader.join()
    assert failures == []
    assert len(reopened) == 8  # after the points written pass 100: batches 3, 7, 11, ..., 31
    assert backend.count() == 1000
    backend.close()


class _Spy:
    """``qdrant_edge`` with ``EdgeShard.load`` counted, and each shard's queries slowed down (so that
    a query is in flight when a rollover comes)."""

    def __init__(self, load, calls):  # type: ignore[no-untyped-def]
        import qdrant_edge

        self._module, self._load, self._calls = qdrant_edge, load, calls

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        if name != "EdgeShard":
            return getattr(self._module, name)
        spy = self

        class EdgeShard:
            @staticmethod
            def create(*args):  # type: ignore[no-untyped-def]
                return _Slow(spy._module.EdgeShard.create(*args))

            @staticmethod
            def load(*args):  # type: ignore[no-untyped-def]
                spy._calls.append(args)
                return _Slow(spy._load(*args))

        return EdgeShard


_QUERYING = threading.Event()


class _Slow:
    def __init__(self, shard):  # type: ignore[no-untyped-def]
        self._shard = shard

    def query_batch(self, request):  # type: ignore[no-untyped-def]
        _QUERYING.set()
        time.sleep(0.02)
        return self._shard.query_batch(request)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._shard, name)
