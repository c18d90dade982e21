"""The Ray engine's input: a file read by one task, or a ``ray.data.Dataset`` checked row by row.

A file is read by one task running the same source and ``read_batches`` as
:func:`~sparsebridge.ingest.ingest` (positions, bad input, duplicate ids: the same dead letters).
A Dataset has no input positions: each row is checked by the same source rules, its dead letters
carry position -1, and an id on several of its rows is a ``duplicate_id`` dead letter on each of
them (a pass over the Dataset's ids before the run finds them; the driver holds every id once, as
ingest() does). Items the journal holds already are dropped here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence, Set
from typing import Any

import pyarrow as pa
import ray
import ray.data
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from sparsebridge.ingest.checkpoint import DeadLetter
from sparsebridge.ingest.ray.work import Work, table
from sparsebridge.ingest.sources import BadInput, DictSource, ItemSource
from sparsebridge.ingest.stages import Batch, read_batches

__all__ = ["Fields", "read"]

Fields = tuple[str, str, Sequence[str] | None]
"""The id field, the text field and the metadata fields (None: every other field) of a row."""

# Ray computes the sizes of a block's pieces in a Python list as long as this (per block), so it
# stays small: the list's time and memory come before the first batch goes out (docs/ray.md,
# "Ray's overhead, measured"). A 128 MiB block holds fewer rows than this unless a batch pickles
# to under 2 KiB; then a piece holds a few batches.
_SPLIT = 1 << 16


def read(data: Any, source: ItemSource | None, batch_size: int, done: Set[str], fields: Fields) -> Any:
    """A ``ray.data.Dataset`` of the rows still to do: of ``source`` (a file), or of the Dataset ``data``."""
    if source is None:
        return data.map_batches(
            _check_rows,
            fn_kwargs={
                "fields": fields,
                "done": ray.put(done),
                "repeated": ray.put(_repeated_ids(data, fields)),
            },
            batch_format="pyarrow",
            batch_size=batch_size,
            num_cpus=0,
        )
    # One read task; each block it outputs is cut into up to _SPLIT pieces (one row, one batch,
    # each), so that the actors share the batches instead of one actor taking a whole 128 MiB
    # block of them.
    return ray.data.read_datasource(
        _SourceDatasource(source, batch_size, done), num_cpus=0, override_num_blocks=_SPLIT
    )


def _unfinished(batch: Batch, done: Set[str]) -> Work | None:
    """The part of a read batch that is not journaled yet (keys: input positions)."""
    batch.docs = [(p, d) for p, d in batch.docs if str(p) not in done]
    batch.letters = [d for d in batch.letters if str(d.position) not in done]
    if not batch.docs and not batch.letters:
        return None
    batch.size = len(batch.docs) + len(batch.letters)
    return Work(batch, [str(p) for p, _ in batch.docs], [str(d.position) for d in batch.letters])


class _SourceDatasource(Datasource):
    """One read task running ``read_batches`` over the whole source (positions and duplicate ids
    need the input in order), on the driver's node (where the file is); journaled items are dropped."""

    def __init__(self, source: ItemSource, batch_size: int, done: Set[str]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._source = source
        self._batch_size = batch_size
        self._done = done

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    @property
    def supports_distributed_reads(self) -> bool:
        return False

    def get_read_tasks(self, parallelism: int, *args: Any, **kwargs: Any) -> list[ReadTask]:
        source, batch_size, done = self._source, self._batch_size, self._done

        def blocks() -> Iterator[pa.Table]:
            for batch in read_batches(source, batch_size=batch_size):
                work = _unfinished(batch, done)
                if work is not None:
                    yield table([work])

        return [ReadTask(blocks, BlockMetadata(None, None, None, None))]


def _repeated_ids(data: Any, fields: Fields) -> dict[str, int]:
    """The ids that more than one row of a Dataset carries, and on how many rows.

    A pass over the Dataset before the run: the rows are checked in parallel by the sources' rules
    and only their ids come to the driver, which keeps every id once (as ingest() does).
    """
    ids = data.map_batches(_ids_of, fn_kwargs={"fields": fields}, batch_format="pyarrow", num_cpus=0)
    seen: set[str] = set()
    repeated: dict[str, int] = {}
    for batch in ids.iter_batches(batch_format="pyarrow", batch_size=65_536):
        for id_ in batch.column("id").to_pylist():
            if id_ in seen:
                repeated[id_] = repeated.get(id_, 1) + 1
            else:
                seen.add(id_)
    return repeated


def _ids_of(rows: pa.Table, fields: Fields) -> pa.Table:
    """The ids of the rows that are documents by the sources' rules."""
    items = DictSource(rows.to_pylist(), *fields, name="<dataset>").items()
    ids = [item.id for item in items if not isinstance(item, BadInput)]
    return pa.table({"id": pa.array(ids, pa.string())})


def _check_rows(rows: pa.Table, fields: Fields, done: Any, repeated: Any) -> pa.Table:
    """Rows of a Dataset as one batch of documents and dead letters (the sources' rules, no positions).

    Every row of an id that ``repeated`` counts is a ``duplicate_id`` dead letter: a Dataset has
    no input order that says which of them comes first. Keys: ``id:`` and the id for a document,
    ``row:`` and a digest of the row for a dead letter.
    """
    done_keys: Set[str] = ray.get(done) if isinstance(done, ray.ObjectRef) else done
    repeats: Mapping[str, int] = ray.get(repeated) if isinstance(repeated, ray.ObjectRef) else repeated
    dicts = rows.to_pylist()
    work = Work(Batch(seq=0, end=0), [], [])
    items = DictSource(dicts, *fields, name="<dataset>").items()
    for row, item in zip(dicts, items, strict=True):
        if not isinstance(item, BadInput) and item.id in repeats:
            count = repeats[item.id]
            reason = f"id {item.id!r} is on {count} rows of the Dataset (which one comes first is unknown)"
            item = BadInput("duplicate_id", reason, item.id)
        if isinstance(item, BadInput):
            key = _row_key(row)
            if key not in done_keys:
                work.batch.letters.append(DeadLetter(-1, item.id, None, item.type, item.reason))
                work.letter_keys.append(key)
        elif "id:" + item.id not in done_keys:
            work.batch.docs.append((-1, item))
            work.doc_keys.append("id:" + item.id)
    work.batch.size = len(work.doc_keys) + len(work.letter_keys)
    return table([work] if work.batch.size else [])


def _row_key(row: Mapping[str, Any]) -> str:
    """The key of a bad Dataset row: a digest of its content (it may have no usable id)."""
    digest = hashlib.sha1(repr(sorted(row.items(), key=lambda kv: str(kv[0]))).encode()).hexdigest()
    return "row:" + digest
