"""The ingest pipeline, sources, checkpoint and versioned writes, with no network (in-memory backend).

The encoder is the real splade-tiny on CPU; the one stand-in is a backend wrapper that fails
after a number of writes (the sink boundary), to test resume.
"""

from __future__ import annotations

import json
import math
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from sparsebridge.backends import MemoryBackend, Record
from sparsebridge.backends.base import WriteStats
from sparsebridge.backends.lucene.bodies import bulk_index_lines
from sparsebridge.backends.lucene.bulk import BulkItem, ItemResult, bulk_write
from sparsebridge.backends.retry import FailureKind, RetryPolicy, classify_failure
from sparsebridge.errors import BackendError, BulkWriteError, InputError, ItemFailure, MissingExtraError
from sparsebridge.ingest import (
    BadInput,
    Checkpoint,
    CsvSource,
    DeadLetterLimitError,
    DictSource,
    JsonlSource,
    ParquetSource,
    ingest,
    open_source,
)
from sparsebridge.ingest.checkpoint import DeadLetter, DeadLetterFile, RunDirLock
from sparsebridge.ingest.pipeline import SHORT_SWITCH_INTERVAL_S
from sparsebridge.ingest.stages import Batch, encode_batch, read_batches, write_batch
from sparsebridge.types import Document, SparseVector


def _docs(n: int, prefix: str = "d") -> list[Document]:
    words = "river planet protein compiler bread moon flood orbit".split()
    return [Document(f"{prefix}{i}", f"{words[i % 8]} {words[(i * 3) % 8]} number {i}") for i in range(n)]


class FailingAfter:
    """Wraps a backend; the write after ``n`` successful ones fails like an unreachable engine."""

    def __init__(self, inner: MemoryBackend, n: int) -> None:
        self.inner, self.left, self.name = inner, n, "memory"

    def ensure_schema(self) -> None:
        self.inner.ensure_schema()

    def write(self, records: Sequence[Record]) -> WriteStats:
        if self.left == 0:
            raise BackendError("engine gone", backend="memory")
        self.left -= 1
        return self.inner.write(records)

    def close(self) -> None:
        pass


class Observed:
    """Wraps the encoder; records the thread and the GIL switch interval of each encode call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[threading.Thread, float]] = []

    def encode_documents(self, texts: Sequence[str], **options: Any) -> list[SparseVector]:
        self.calls.append((threading.current_thread(), sys.getswitchinterval()))
        return list(self.inner.encode_documents(texts, **options))


def test_the_calling_thread_encodes_and_the_switch_interval_is_left_alone(encoder: Any) -> None:
    # Encoding on the calling thread keeps torch on the OpenMP pool that thread already owns.
    observed = Observed(encoder)
    before = sys.getswitchinterval()
    stats = ingest(_docs(40), encoder=observed, backend=MemoryBackend(), batch_size=8)  # type: ignore[arg-type]
    assert stats.written == 40 and len(observed.calls) == 5
    assert {thread for thread, _ in observed.calls} == {threading.current_thread()}
    assert {interval for _, interval in observed.calls} == {before}  # no process-wide change by default


def test_short_gil_switches_is_an_opt_in_restored_at_the_end(encoder: Any) -> None:
    observed = Observed(encoder)
    before = sys.getswitchinterval()
    assert before > SHORT_SWITCH_INTERVAL_S
    ingest(_docs(16), encoder=observed, backend=MemoryBackend(), batch_size=8, short_gil_switches=True)  # type: ignore[arg-type]
    assert [interval for _, interval in observed.calls] == [SHORT_SWITCH_INTERVAL_S] * 2
    assert sys.getswitchinterval() == before


def test_read_batches_positions_duplicates_and_stop() -> None:
    rows: list[Any] = [{"id": i % 4, "text": f"river {i}"} for i in range(6)] + [{"id": 9, "text": ""}]
    batches = list(read_batches(DictSource(rows), batch_size=3))
    assert [(b.seq, b.end, b.size) for b in batches] == [(0, 3, 3), (1, 6, 3), (2, 7, 1)]
    assert [p for b in batches for p, _ in b.docs] == [0, 1, 2, 3]
    assert [(d.position, d.id, d.type) for b in batches for d in b.letters] == [
        (4, "0", "duplicate_id"),
        (5, "1", "duplicate_id"),
        (6, "9", "empty_text"),
    ]
    # A resume from position 5: the first occurrence before the start still wins.
    [resumed] = list(read_batches(DictSource(rows), batch_size=3, start=5))
    assert (resumed.end, resumed.size, [d.type for d in resumed.letters]) == (
        7,
        2,
        ["duplicate_id", "empty_text"],
    )
    calls = iter([False, False, True])
    [cut] = list(read_batches(DictSource(rows), batch_size=3, stopped=lambda: next(calls)))
    assert (cut.end, cut.size) == (2, 2)


def test_encode_batch_versions_records_and_dead_letters_empty_vectors(encoder: Any) -> None:
    batch = Batch(seq=0, end=2, docs=[(0, Document("a", "river flood")), (1, Document("b", "moon"))], size=2)
    encode_batch(batch, encoder, run_number=7)
    assert [(r.document.id, r.version) for r in batch.records] == [("a", 7), ("b", 7)]
    assert [r.vector for r in batch.records] == encoder.encode_documents(["river flood", "moon"])
    empty = Batch(seq=0, end=1, docs=[(0, Document("a", "river flood"))], size=1)
    encode_batch(empty, encoder, run_number=7, min_weight=1e9)
    assert empty.records == [] and [(d.position, d.type) for d in empty.letters] == [(0, "empty_vector")]


class RefusingOne:
    """A sink that refuses the item ``bad`` permanently, as an engine's mapping error would."""

    name = "memory"

    def __init__(self, bad: str) -> None:
        self.bad, self.inner = bad, MemoryBackend()

    def write(self, records: Sequence[Record]) -> WriteStats:
        good = [r for r in records if r.document.id != self.bad]
        stats = self.inner.write(good)
        failure = ItemFailure(self.bad, 400, "mapper_parsing_exception", "bad field")
        raise BulkWriteError("1 item failed", backend="memory", failures=[failure], stats=stats)


def test_write_batch_turns_permanent_refusals_into_dead_letters() -> None:
    vector = SparseVector.from_dict({3: 1.0})
    docs = [(10, Document("a", "t")), (11, Document("b", "t"))]
    batch = Batch(seq=0, end=12, docs=docs, records=[Record(d, vector) for _, d in docs], size=2)
    sink = RefusingOne("b")
    stats = write_batch(batch, sink)  # type: ignore[arg-type]
    assert stats.written == 1 and sink.inner.count() == 1
    assert [(d.position, d.id, d.status, d.type) for d in batch.letters] == [
        (11, "b", 400, "mapper_parsing_exception")
    ]


def test_dict_rows_and_documents_are_accepted_and_bad_rows_dead_lettered(encoder: Any) -> None:
    rows: list[Any] = [
        {"id": 1, "text": "river flood", "lang": "en"},
        {"id": 2, "text": "planet", "score": math.nan},  # not strict JSON
        {"id": 3, "text": "   "},
        "not a dict",
        Document("4", "bread oven"),
        {"id": 1, "text": "again"},
    ]
    backend = MemoryBackend()
    stats = ingest(rows, encoder=encoder, backend=backend, batch_size=2, max_dead_letter_fraction=1.0)
    assert stats.written == 2 and backend.count() == 2
    assert [(d.position, d.id, d.type) for d in stats.dead_letters] == [
        (1, "2", "bad_metadata"),
        (2, "3", "empty_text"),
        (3, None, "not_object"),
        (5, "1", "duplicate_id"),
    ]
    assert stats.position == 6 and stats.in_flight == 0


def test_resume_after_a_failed_run_writes_every_document_once(encoder: Any, tmp_path: Path) -> None:
    documents = _docs(100)
    memory = MemoryBackend()
    run_dir = tmp_path / "run"
    with pytest.raises(BackendError, match="engine gone"):
        ingest(
            documents,
            encoder=encoder,
            backend=FailingAfter(memory, 3),
            batch_size=10,
            run_dir=run_dir,
            writers=1,
        )
    checkpoint = Checkpoint.load(run_dir)
    assert checkpoint is not None and checkpoint.position == 30 and not checkpoint.done
    assert memory.count() == 30
    stats = ingest(documents, encoder=encoder, backend=memory, batch_size=10, run_dir=run_dir, resume=True)
    assert (stats.skipped, stats.written, stats.run_number) == (30, 70, checkpoint.run_number)
    assert memory.count() == 100
    done = Checkpoint.load(run_dir)
    assert done is not None and done.done and done.position == 100 and done.written == 100
    again = ingest(documents, encoder=encoder, backend=memory, batch_size=10, run_dir=run_dir, resume=True)
    assert again.written == 0  # a finished run has nothing left to do


def test_resume_refuses_another_input_or_a_missing_checkpoint(encoder: Any, tmp_path: Path) -> None:
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    for path in (a, b):
        path.write_text(json.dumps({"id": "x", "text": "river"}) + "\n")
    memory = MemoryBackend()
    with pytest.raises(InputError, match="no checkpoint"):
        ingest(JsonlSource(a), encoder=encoder, backend=memory, run_dir=tmp_path / "r", resume=True)
    ingest(JsonlSource(a), encoder=encoder, backend=memory, run_dir=tmp_path / "r")
    with pytest.raises(InputError, match="was for input"):
        ingest(JsonlSource(b), encoder=encoder, backend=memory, run_dir=tmp_path / "r", resume=True)


def test_a_new_run_in_the_same_dir_gets_a_higher_run_number(encoder: Any, tmp_path: Path) -> None:
    memory = MemoryBackend()
    first = ingest(_docs(5), encoder=encoder, backend=memory, run_dir=tmp_path, run_number=10**15)
    second = ingest(_docs(5), encoder=encoder, backend=memory, run_dir=tmp_path)
    assert first.run_number == 10**15 and second.run_number == 10**15 + 1
    assert second.written == 5


def test_a_run_holds_its_run_dir_and_a_second_one_is_refused(encoder: Any, tmp_path: Path) -> None:
    memory = MemoryBackend()
    busy = pytest.raises(InputError, match="another run is using this run directory")
    with RunDirLock(tmp_path / "run"), busy:  # another run, here in this process: flock is per open file
        ingest(_docs(5), encoder=encoder, backend=memory, run_dir=tmp_path / "run")
    assert memory.count() == 0 and not (tmp_path / "run" / "checkpoint.json").exists()
    stats = ingest(_docs(5), encoder=encoder, backend=memory, run_dir=tmp_path / "run")  # released
    assert stats.written == 5
    with RunDirLock(tmp_path / "run"):  # the run released it when it ended
        pass


def test_the_dead_letter_limit_stops_the_run(encoder: Any) -> None:
    rows = [{"id": i, "text": "river" if i % 10 else ""} for i in range(1200)]
    with pytest.raises(DeadLetterLimitError, match=r"empty text: \d+"):
        ingest(rows, encoder=encoder, backend=MemoryBackend(), batch_size=100, max_dead_letter_fraction=0.05)


def test_dead_letter_file_is_truncated_to_the_checkpoint_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    letters = DeadLetterFile(path)
    letters.write(DeadLetter(0, "a", None, "empty_text", "x"))
    kept = letters.sync()
    letters.write(DeadLetter(5, "b", None, "empty_text", "y"))
    letters.close()
    DeadLetterFile(path, truncate_at=kept).close()
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a"]


def test_csv_dict_and_parquet_sources(tmp_path: Path) -> None:
    csv_path = tmp_path / "docs.csv"
    csv_path.write_text('id,text,lang\n1,"river, flood",en\n2,,fr\n3,a,b,extra\n', encoding="utf-8")
    items = list(open_source(csv_path).items())
    assert (
        isinstance(items[0], Document)
        and items[0].text == "river, flood"
        and items[0].metadata == {"lang": "en"}
    )
    assert isinstance(items[1], BadInput) and items[1].type == "empty_text" and items[1].line == 3
    assert isinstance(items[2], BadInput) and items[2].type == "malformed"
    assert isinstance(open_source(tmp_path / "x.parquet"), ParquetSource)
    assert isinstance(open_source(tmp_path / "x.jsonl"), JsonlSource)
    assert [d.id for d in DictSource([{"id": 7, "text": "t"}])] == ["7"]
    with pytest.raises(InputError, match="not a string/integer"):
        list(CsvSource(csv_path, id_field="nope"))


def test_parquet_source_reads_row_batches_and_flags_bad_rows(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "docs.parquet"
    table = pa.table(
        {
            "id": ["a", "b", None, "d"],
            "text": ["river", "", "moon", "flood"],
            "lang": ["en", "fr", "de", None],
        }
    )
    pq.write_table(table, path, row_group_size=2)
    items = list(ParquetSource(path, batch_rows=3).items())
    assert [type(i).__name__ for i in items] == ["Document", "BadInput", "BadInput", "Document"]
    first, empty, no_id, last = items
    assert isinstance(first, Document) and first.metadata == {"lang": "en"}
    assert isinstance(empty, BadInput) and (empty.type, empty.line) == ("empty_text", 2)
    assert isinstance(no_id, BadInput) and no_id.line == 3
    assert isinstance(last, Document) and last.id == "d"


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if pyarrow were not installed
    with pytest.raises(MissingExtraError, match="pip install pyarrow"):
        list(ParquetSource(tmp_path / "x.parquet").items())


def test_a_hugging_face_dataset_is_a_source(encoder: Any) -> None:
    import datasets

    rows = {
        "id": [f"d{i}" for i in range(30)],
        "text": [f"river planet number {i}" if i != 7 else "  " for i in range(30)],
        "lang": ["en"] * 30,
    }
    dataset = datasets.Dataset.from_dict(rows)
    backend = MemoryBackend()
    stats = ingest(dataset, encoder=encoder, backend=backend, batch_size=8, max_dead_letter_fraction=0.1)
    assert (stats.written, stats.dead_lettered) == (29, 1)
    assert backend.count() == 29
    [document] = [d for d in DictSource(dataset.select([3]))]
    assert (document.id, document.text, dict(document.metadata)) == (
        "d3",
        "river planet number 3",
        {"lang": "en"},
    )


def test_versioned_bulk_lines_and_stale_409s() -> None:
    vector = SparseVector.from_dict({5: 0.5})
    lines = bulk_index_lines(Document("a", "t"), vector, doc_key="k", field="splade", version=7)
    assert json.loads(lines.splitlines()[0]) == {
        "index": {"_id": "k", "version": 7, "version_type": "external"}
    }
    assert classify_failure(409, "version_conflict_engine_exception") is FailureKind.STALE
    conflict = ItemResult(409, "version_conflict_engine_exception", "current version [9] is higher")
    answers = iter([[ItemResult(201), conflict]])
    stats = bulk_write(
        [BulkItem("a", lines), BulkItem("b", lines)],
        send=lambda body: next(answers),
        backend="test",
        policy=RetryPolicy(),
    )
    assert (stats.written, stats.stale, stats.retries) == (1, 1, 0)


def test_memory_backend_honours_run_numbers() -> None:
    memory = MemoryBackend()
    new, old = SparseVector.from_dict({1: 2.0}), SparseVector.from_dict({1: 1.0})
    memory.write([Record(Document("a", "t"), new, version=2)])
    stats = memory.write([Record(Document("a", "t"), old, version=1)])
    assert (stats.written, stats.stale) == (0, 1)
    assert memory._rows["a"][0] == new
    with pytest.raises(ValueError, match="positive integer"):
        Record(Document("a", "t"), new, version=0)
