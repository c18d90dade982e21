"""Ingestion on a Ray cluster: Ray Data reads, an actor pool encodes, a Datasink writes.

::

    read                 a file: one read task running the same source and read_batches as
                         ingest() (positions, bad input, duplicate ids: the same dead letters);
                         or an existing ray.data.Dataset: each row checked by the same source rules
    map_batches          ActorPoolStrategy(size=actors): each actor loads the sparse (and dense)
                         model once, on its GPU when it has one, and runs encode_batch
    write_datasink       each write task hands its batch to one of ``writers`` writer actors,
                         which run write_batch on a sparsebridge backend (its retries, idempotent
                         ids, the run number as version) and then journal the batch

A Ray row is one whole batch (a pickled ``_Work``: the batch and the journal key of each of its
items, the input position or, for a Dataset, the id), so Ray never re-cuts batches and every
encoder call sees the texts ingest() would give it.

The journal (``RUN_DIR/ray/*.jsonl``, one file per writer actor and driver session) holds one
line per written batch: its keys, its counters and its dead letters, appended and fsynced after
the engine acknowledged the batch. A re-run with ``resume=True`` skips every journaled key; a
batch written but not journaled (a kill in between) is written again, which the same ids and the
same run number make harmless (the engine keeps one copy). At the end the driver writes
``RUN_DIR/dead_letter.jsonl`` (in input order, as :func:`~sparsebridge.ingest.ingest` does) and
marks the checkpoint done.

A Dataset has no input positions: its dead letters carry position -1, and an id on several of its
rows is a ``duplicate_id`` dead letter on each of them (a pass over the Dataset's ids before the
run finds them; the driver holds every id once, as ingest() does).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsebridge.backends import open_backend, parse_target
from sparsebridge.backends.model_identity import ModelIdentity, check_model
from sparsebridge.errors import DeadLetterLimitError, InputError, MissingExtraError, SparsebridgeError
from sparsebridge.ingest.checkpoint import DEAD_LETTER_NAME, Checkpoint, DeadLetter
from sparsebridge.ingest.pipeline import IngestStats, describe_target, open_run, run_dir_lock
from sparsebridge.ingest.sources import BadInput, DictSource, ItemSource, open_source
from sparsebridge.ingest.stages import Batch, TokenCounter, encode_batch, read_batches, write_batch
from sparsebridge.types import check_pruning

try:
    import pyarrow as pa
    import ray
    import ray.data
    from ray.data.block import BlockAccessor, BlockMetadata
    from ray.data.datasource import Datasink, Datasource, ReadTask
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError as e:  # the module is the extra: importing it without ray says what to install
    raise MissingExtraError("ray[data]", "ray") from e

__all__ = ["JOURNAL_DIR", "RayOptions", "ray_ingest"]

logger = logging.getLogger(__name__)

JOURNAL_DIR = "ray"
"""The journal's folder inside the run directory."""


@dataclass(frozen=True)
class RayOptions:
    """How the Ray pipeline is laid out.

    ``actors`` encoder actors, each with ``gpus_per_actor`` GPUs (0: CPU; a fraction shares a GPU)
    and ``cpus_per_actor`` CPUs (on a CPU, also its torch threads); ``batch_size`` items per
    encoder call and per write (default 256 on a CPU, 4096 with GPUs: the encoder cuts each call
    into token-budget batches itself); ``writers`` writer actors (an embedded target allows one).
    """

    actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    batch_size: int | None = None
    writers: int = 1

    def __post_init__(self) -> None:
        if self.batch_size is None:
            object.__setattr__(self, "batch_size", 4096 if self.gpus_per_actor > 0 else 256)
        if self.actors <= 0 or self.rows <= 0 or self.writers <= 0:
            raise ValueError("actors, batch_size and writers must be positive")
        if self.gpus_per_actor < 0 or self.cpus_per_actor <= 0:
            raise ValueError("gpus_per_actor must be >= 0 and cpus_per_actor > 0")

    @property
    def rows(self) -> int:
        """Items per encoder call and per write (``batch_size`` resolved)."""
        assert self.batch_size is not None
        return self.batch_size


@dataclass(frozen=True)
class _Models:
    """What each encoder actor loads (the models travel by name, never pickled)."""

    model: str
    dense_model: str | None
    trust_remote_code: bool
    top_k: int | None
    min_weight: float
    run_number: int
    device: str
    threads: int


def ray_ingest(
    data: str | Path | ItemSource | ray.data.Dataset,
    *,
    model: str,
    target: str,
    run_dir: Path,
    options: RayOptions | None = None,
    backend_options: Mapping[str, Any] | None = None,
    dense_model: str | None = None,
    trust_remote_code: bool = False,
    top_k: int | None = None,
    min_weight: float = 0.0,
    resume: bool = False,
    run_number: int | None = None,
    max_dead_letter_fraction: float = 0.01,
    id_field: str = "id",
    text_field: str = "text",
    metadata_fields: Sequence[str] | None = None,
    allow_model_mismatch: bool = False,
) -> IngestStats:
    """Encode and write ``data`` on the Ray cluster this process is connected to (or a local one).

    Args:
        data: A JSONL, CSV or Parquet file (read by one task on the driver's node, as
            :func:`~sparsebridge.ingest.open_source` reads it), a source with ``items()``, or a
            ``ray.data.Dataset`` of rows with ``id_field`` and ``text_field``.
        model: The sparse model (hub name, local directory or bundled short name), loaded once
            per encoder actor.
        target: The target URI (see :mod:`sparsebridge.backends.targets`).
        run_dir: The checkpoint, the journal and the dead-letter file; on a multi-node cluster a
            directory every node can write (a shared file system).
        options: Actors, GPUs and CPUs per actor, batch size, writers (:class:`RayOptions`).
        backend_options: Keyword options of :func:`~sparsebridge.backends.open_backend`
            (``retry``, ``refresh``, ``api_key``, ``dense_size``, ...).
        dense_model: Also store a dense embedding from this sentence-transformers model
            (computed in the same actor; ``backend_options`` must give its ``dense_size``).
        trust_remote_code: Passed to transformers when loading the models.
        top_k: Keep at most this many weights per vector.
        min_weight: Drop weights <= this.
        resume: Continue the run whose checkpoint and journal are in ``run_dir``.
        run_number: The version every write carries (default as in :func:`~sparsebridge.ingest.ingest`).
        max_dead_letter_fraction: Fail when more than this fraction of the items was dead-lettered
            (checked at the end).
        id_field: The id field of a file or Dataset.
        text_field: The text field of a file or Dataset.
        metadata_fields: The fields kept as metadata (None: every other field).
        allow_model_mismatch: Write even when the target records another model; by default
            that is refused (before the first write: the encoders report their model's identity).

    Returns:
        The counters of this run (``written``, ``stale``, ``dead_lettered``, ``truncated``,
        ``retries`` count this driver's work; ``skipped`` the items an earlier run journaled).

    Raises:
        MissingExtraError: ``ray[data]`` is not installed.
        InputError: Another run holds ``run_dir`` (its lock), or it cannot be written.
        SchemaMismatchError: The index or collection does not match (before any encoding), or
            records another model (before any write).
        DeadLetterLimitError: Too many dead-lettered items.
        BackendError: A fatal or persistent backend failure.

    Example:
        >>> ray_ingest("docs.jsonl", model="splade-tiny", target="opensearch://localhost/docs",
        ...            run_dir=Path("runs/docs"), options=RayOptions(actors=4))  # doctest: +SKIP
    """
    options = options or RayOptions()
    check_pruning(top_k, min_weight)
    if not 0 <= max_dead_letter_fraction <= 1:
        raise ValueError("max_dead_letter_fraction must be in [0, 1]")
    parsed = parse_target(target)
    if parsed.embedded and options.writers != 1:
        raise ValueError(f"an embedded target ({parsed.uri}) is opened by one process: use writers=1")
    backend_kwargs = dict(backend_options or {})
    if dense_model is not None and "dense_size" not in backend_kwargs:
        raise ValueError("a dense model needs backend_options['dense_size'] (its dimension)")
    source, source_name = _source(data, id_field, text_field, metadata_fields)

    with run_dir_lock(run_dir):  # one driver at a time in a run dir
        backend = open_backend(parsed, **backend_kwargs)
        try:
            target_name = describe_target(backend)
            checkpoint, dead_letter = open_run(run_dir, resume, run_number, source_name, target_name)
            backend.ensure_schema()  # preflight: a wrong schema fails before any encoding
        finally:
            backend.close()  # an embedded store admits one process: the writer actor opens it
        if dead_letter is not None:
            dead_letter.close()  # written whole at the end, from the journal
        journal = run_dir / JOURNAL_DIR
        if not resume:
            shutil.rmtree(journal, ignore_errors=True)
        previous = _Journal.load(journal)
        stats = IngestStats(
            run_number=checkpoint.run_number, writers=options.writers, skipped=len(previous.keys)
        )
        if checkpoint.done:
            logger.info("run %d is already complete; nothing to do", checkpoint.run_number)
            stats.position = checkpoint.position
            return stats

        if not ray.is_initialized():
            ray.init()
        session = uuid.uuid4().hex[:12]
        started = time.perf_counter()
        writers = _start_writers(
            parsed.embedded, options, target, backend_kwargs, journal, session, allow_model_mismatch
        )
        try:
            dataset = _read(data, source, options.rows, previous, id_field, text_field, metadata_fields)
            models = _Models(
                model=model,
                dense_model=dense_model,
                trust_remote_code=trust_remote_code,
                top_k=top_k,
                min_weight=min_weight,
                run_number=checkpoint.run_number,
                device="cuda" if options.gpus_per_actor > 0 else "cpu",
                threads=max(1, int(options.cpus_per_actor)),
            )
            encoded = dataset.map_batches(
                _EncodeActor,
                fn_constructor_kwargs={"models": models},
                batch_size=1,  # one row: one batch of ``options.rows`` items
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=options.actors),
                num_gpus=options.gpus_per_actor,
                num_cpus=options.cpus_per_actor,
            )
            with _unwrapped():
                encoded.write_datasink(
                    _BackendDatasink(writers), ray_remote_args={"num_cpus": 0}, concurrency=len(writers)
                )
                ray.get([writer.close.remote() for writer in writers])
        finally:
            for writer in writers:
                ray.kill(writer)
        stats.elapsed_s = time.perf_counter() - started
        return _finish(run_dir, checkpoint, _Journal.load(journal), session, stats, max_dead_letter_fraction)


def _source(
    data: Any, id_field: str, text_field: str, metadata_fields: Sequence[str] | None
) -> tuple[ItemSource | None, str]:
    """The item source of a file (None for a Dataset) and the input's name for the checkpoint."""
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.exists():
            raise InputError("input file does not exist", source=str(path))
        return open_source(
            path, id_field=id_field, text_field=text_field, metadata_fields=metadata_fields
        ), str(path)
    if isinstance(data, ItemSource):
        return data, str(getattr(data, "path", "") or "")
    if type(data).__name__ in ("Dataset", "MaterializedDataset") and hasattr(data, "map_batches"):
        return None, ""
    raise TypeError(
        f"data must be a file path, a source with items() or a ray.data.Dataset, not {type(data)}"
    )


@dataclass
class _Journal:
    """Every journaled block of a run: the keys done, the counters, the dead letters, per session."""

    keys: set[str] = field(default_factory=set)
    letters: dict[str, DeadLetter] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    by_session: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path) -> _Journal:
        journal = cls()
        for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:  # a line cut by a kill: its block was not journaled
                    continue
                journal._add(entry)
        return journal

    def _add(self, entry: dict[str, Any]) -> None:
        new = [k for k in entry["keys"] if k not in self.keys]
        self.keys.update(new)
        for key, letter in entry["letters"]:
            self.letters[key] = DeadLetter(**letter)
        counts = {name: int(entry[name]) for name in _COUNTERS}
        counts["items"] = len(new)
        session = self.by_session.setdefault(entry["session"], {})
        for name, value in counts.items():
            self.totals[name] = self.totals.get(name, 0) + value
            session[name] = session.get(name, 0) + value


_COUNTERS = ("written", "stale", "retries", "truncated")


def _finish(
    run_dir: Path,
    checkpoint: Checkpoint,
    journal: _Journal,
    session: str,
    stats: IngestStats,
    fraction: float,
) -> IngestStats:
    """Write the dead-letter file and the checkpoint from the journal; the final fraction check."""
    letters = sorted(journal.letters.values(), key=lambda d: (d.position, d.id or ""))
    path = run_dir / DEAD_LETTER_NAME
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for letter in letters:
            out.write(json.dumps(letter.to_json(), ensure_ascii=False) + "\n")
        out.flush()
        os.fsync(out.fileno())
        checkpoint.dead_letter_bytes = out.tell()
    tmp.replace(path)
    mine = journal.by_session.get(session, {})
    for name in _COUNTERS:
        setattr(stats, name, mine.get(name, 0))
    stats.read = mine.get("items", 0)
    stats.dead_lettered = len(letters)
    stats.dead_letters = letters[:1000]
    stats.position = len(journal.keys)
    checkpoint.position = len(journal.keys)
    checkpoint.written = journal.totals.get("written", 0)
    checkpoint.stale = journal.totals.get("stale", 0)
    checkpoint.truncated = journal.totals.get("truncated", 0)
    checkpoint.dead_lettered = len(letters)
    if checkpoint.position == 0:
        checkpoint.save(run_dir)
        raise InputError("no documents")
    if len(letters) > fraction * checkpoint.position:
        checkpoint.save(run_dir)
        reasons: dict[str, int] = {}
        for letter in letters:
            reasons[letter.type] = reasons.get(letter.type, 0) + 1
        listed = ", ".join(
            f"{k.replace('_', ' ')}: {n}" for k, n in sorted(reasons.items(), key=lambda x: -x[1])
        )
        raise DeadLetterLimitError(
            f"{len(letters)} of {checkpoint.position} items were dead-lettered ({listed}), more than the "
            f"allowed fraction {fraction} (see {path})"
        )
    checkpoint.done = True
    checkpoint.save(run_dir)
    logger.info("run %d: %s", checkpoint.run_number, stats.summary())
    return stats


@contextlib.contextmanager
def _unwrapped() -> Iterator[None]:
    """Raise a sparsebridge error from a Ray task as itself (it pickles), not wrapped in RayTaskError."""
    try:
        yield
    except ray.exceptions.RayTaskError as e:
        cause = e.cause
        while isinstance(cause, ray.exceptions.RayTaskError):
            cause = cause.cause
        if isinstance(cause, SparsebridgeError):
            raise cause from e
        raise


# The stages. A row is one batch of the single-process pipeline (a ``_Work``): Ray never splits
# or merges it, so every encoder call sees the texts ingest() would give it.


@dataclass
class _Work:
    """One batch on its way through the stages, with the journal key of each of its items.

    ``doc_keys`` follow ``batch.docs``, ``letter_keys`` the dead letters the batch was read with;
    a dead letter added later (an empty vector, a refusal) takes the key of its document.
    """

    batch: Batch
    doc_keys: list[str]
    letter_keys: list[str]
    model: ModelIdentity | None = None  # set by the encoder actor

    def keys(self) -> list[str]:
        return [*self.doc_keys, *self.letter_keys]

    def letters(self) -> list[tuple[str, DeadLetter]]:
        of_id = {d.id: key for (_, d), key in zip(self.batch.docs, self.doc_keys, strict=True)}
        keys = [*self.letter_keys, *(of_id[d.id or ""] for d in self.batch.letters[len(self.letter_keys) :])]
        return list(zip(keys, self.batch.letters, strict=True))


def _table(works: Iterable[_Work]) -> pa.Table:
    rows = [pickle.dumps(w, protocol=pickle.HIGHEST_PROTOCOL) for w in works]
    return pa.table({"work": pa.array(rows, pa.binary())})


def _works(table: pa.Table) -> list[_Work]:
    return [pickle.loads(b) for b in table.column("work").to_pylist()]


def _unfinished(batch: Batch, done: Set[str]) -> _Work | None:
    """The part of a read batch that is not journaled yet (keys: input positions)."""
    batch.docs = [(p, d) for p, d in batch.docs if str(p) not in done]
    batch.letters = [d for d in batch.letters if str(d.position) not in done]
    if not batch.docs and not batch.letters:
        return None
    batch.size = len(batch.docs) + len(batch.letters)
    return _Work(batch, [str(p) for p, _ in batch.docs], [str(d.position) for d in batch.letters])


def _read(
    data: Any,
    source: ItemSource | None,
    batch_size: int,
    previous: _Journal,
    id_field: str,
    text_field: str,
    metadata_fields: Sequence[str] | None,
) -> Any:
    if source is None:
        fields = (id_field, text_field, metadata_fields)
        return data.map_batches(
            _check_rows,
            fn_kwargs={
                "fields": fields,
                "done": ray.put(previous.keys),
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
        _SourceDatasource(source, batch_size, previous.keys), num_cpus=0, override_num_blocks=_SPLIT
    )


# Ray computes the sizes of a block's pieces in a Python list as long as this (per block), so it
# must stay small: 2**30 took ~45 s and ~8 GiB per block on a 2-core VM before the first batch
# went out. A 128 MiB block holds fewer rows than this unless a batch pickles to under 2 KiB;
# then a piece holds a few batches.
_SPLIT = 1 << 16


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

        def read() -> Iterator[pa.Table]:
            for batch in read_batches(source, batch_size=batch_size):
                work = _unfinished(batch, done)
                if work is not None:
                    yield _table([work])

        return [ReadTask(read, BlockMetadata(None, None, None, None))]


_FieldNames = tuple[str, str, Sequence[str] | None]


def _repeated_ids(data: Any, fields: _FieldNames) -> dict[str, int]:
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


def _ids_of(table: pa.Table, fields: _FieldNames) -> pa.Table:
    """The ids of the rows that are documents by the sources' rules."""
    items = DictSource(table.to_pylist(), *fields, name="<dataset>").items()
    ids = [item.id for item in items if not isinstance(item, BadInput)]
    return pa.table({"id": pa.array(ids, pa.string())})


def _check_rows(table: pa.Table, fields: _FieldNames, done: Any, repeated: Any) -> pa.Table:
    """Rows of a Dataset as one batch of documents and dead letters (the sources' rules, no positions).

    Every row of an id that ``repeated`` counts is a ``duplicate_id`` dead letter: a Dataset has
    no input order that says which of them comes first. Keys: ``id:`` and the id for a document,
    ``row:`` and a digest of the row for a dead letter.
    """
    done_keys: Set[str] = ray.get(done) if isinstance(done, ray.ObjectRef) else done
    repeats: Mapping[str, int] = ray.get(repeated) if isinstance(repeated, ray.ObjectRef) else repeated
    rows = table.to_pylist()
    work = _Work(Batch(seq=0, end=0), [], [])
    items = DictSource(rows, *fields, name="<dataset>").items()
    for row, item in zip(rows, items, strict=True):
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
    return _table([work] if work.batch.size else [])


def _row_key(row: Mapping[str, Any]) -> str:
    """The key of a bad Dataset row: a digest of its content (it may have no usable id)."""
    digest = hashlib.sha1(repr(sorted(row.items(), key=lambda kv: str(kv[0]))).encode()).hexdigest()
    return "row:" + digest


class _EncodeActor:
    """One per actor of the pool: loads the models once, then runs ``encode_batch`` on each batch."""

    def __init__(self, models: _Models) -> None:
        import torch

        from sparsebridge.encoder import Encoder

        if models.device == "cpu":
            torch.set_num_threads(models.threads)
        self.models = models
        self.encoder = Encoder.load(
            models.model, device=models.device, trust_remote_code=models.trust_remote_code
        )
        self.dense = None
        if models.dense_model is not None:
            from sparsebridge.encoder.dense import DenseEncoder

            self.dense = DenseEncoder.load(
                models.dense_model, device=models.device, trust_remote_code=models.trust_remote_code
            )
        self.tokens = TokenCounter.for_encoder(self.encoder)
        self.identity = ModelIdentity.of(self.encoder)

    def __call__(self, table: pa.Table) -> pa.Table:
        works = _works(table)
        for work in works:
            work.model = self.identity
            batch = work.batch
            if self.tokens is not None:
                batch.truncated = sum(self.tokens.too_long(d.text) for _, d in batch.docs)
            encode_batch(
                batch,
                self.encoder,
                dense_encoder=self.dense,
                top_k=self.models.top_k,
                min_weight=self.models.min_weight,
                run_number=self.models.run_number,
            )
        return _table(works)


class _Writer:
    """A writer actor: one backend, ``write_batch`` per batch, then one journal line (fsynced)."""

    def __init__(
        self,
        target: str,
        backend_options: dict[str, Any],
        journal: str,
        session: str,
        index: int,
        allow_model_mismatch: bool,
    ) -> None:
        self.backend = open_backend(target, **backend_options)
        self.allow_model_mismatch = allow_model_mismatch
        self.checked: set[ModelIdentity | None] = set()
        folder = Path(journal)
        folder.mkdir(parents=True, exist_ok=True)
        self.session = session
        self.handle = (folder / f"{session}-{index}.jsonl").open("a", encoding="utf-8")

    def write(self, table: pa.Table) -> int:
        works = _works(table)
        for work in works:
            if work.model not in self.checked:  # as ingest() does, before the first write
                check_model(self.backend, work.model, record=True, allow_mismatch=self.allow_model_mismatch)
                self.checked.add(work.model)
            written = write_batch(work.batch, self.backend)  # a refused item becomes a dead letter
            entry = {
                "session": self.session,
                "at": time.time(),
                "keys": work.keys(),
                "written": written.written,
                "stale": written.stale,
                "retries": written.retries,
                "truncated": work.batch.truncated,
                "letters": [(key, letter.to_json()) for key, letter in work.letters()],
            }
            self.handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self.handle.flush()
            os.fsync(self.handle.fileno())
        return len(works)

    def close(self) -> None:
        self.handle.close()
        self.backend.close()


def _start_writers(
    embedded: bool,
    options: RayOptions,
    target: str,
    backend_options: dict[str, Any],
    journal: Path,
    session: str,
    allow_model_mismatch: bool,
) -> list[Any]:
    """The writer actors; an embedded target's on the driver's node (its files are there)."""
    placement: dict[str, Any] = {"num_cpus": 0}
    if embedded:
        node = ray.get_runtime_context().get_node_id()
        placement["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
    actor = ray.remote(_Writer)
    return [
        actor.options(**placement).remote(
            target, backend_options, str(journal), session, i, allow_model_mismatch
        )
        for i in range(options.writers)
    ]


class _BackendDatasink(Datasink[int]):
    """Hands each block to a writer actor and waits until it is written and journaled."""

    def __init__(self, writers: list[Any]) -> None:
        self._writers = writers

    def get_name(self) -> str:
        return "sparsebridge"

    def write(self, blocks: Iterable[Any], ctx: Any) -> int:
        writer = self._writers[ctx.task_idx % len(self._writers)]
        done = 0
        for block in blocks:
            table = BlockAccessor.for_block(block).to_arrow()
            if table.num_rows:
                done += int(ray.get(writer.write.remote(table)))
        return done
