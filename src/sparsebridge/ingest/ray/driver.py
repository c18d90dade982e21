"""The Ray engine's driver: :func:`ray_ingest` lays the stages out on the cluster and owns the run."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
import ray.data

from sparsebridge.backends import open_backend, parse_target
from sparsebridge.errors import InputError, SparsebridgeError
from sparsebridge.ingest.checkpoint import target_identity
from sparsebridge.ingest.options import (
    Pruning,
    PruningShortcuts,
    RunOptions,
    RunShortcuts,
    grouped,
    unknown_keywords,
)
from sparsebridge.ingest.ray.actors import BackendDatasink, EncodeActor, Models, start_writers
from sparsebridge.ingest.ray.datasets import read
from sparsebridge.ingest.ray.journal import JOURNAL_DIR, Journal
from sparsebridge.ingest.run import IngestStats, Run
from sparsebridge.ingest.sources import ItemSource, input_name, open_source

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["RayOptions", "RayShortcuts", "ray_ingest"]

logger = logging.getLogger(__name__)


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


class RayShortcuts(RunShortcuts, PruningShortcuts, total=False):
    """Every field of :func:`ray_ingest`'s option groups, as a keyword of its own."""


def ray_ingest(
    data: str | Path | ItemSource | ray.data.Dataset,
    *,
    model: str,
    target: str,
    options: RayOptions | None = None,
    run: RunOptions | None = None,
    pruning: Pruning | None = None,
    backend_options: Mapping[str, Any] | None = None,
    dense_model: str | None = None,
    trust_remote_code: bool = False,
    id_field: str = "id",
    text_field: str = "text",
    metadata_fields: Sequence[str] | None = None,
    **shortcuts: Unpack[RayShortcuts],
) -> IngestStats:
    """Encode and write ``data`` on the Ray cluster this process is connected to (or a local one).

    Args:
        data: A JSONL, CSV or Parquet file (read by one task on the driver's node, as
            :func:`~sparsebridge.ingest.open_source` reads it), a source with ``items()``, or a
            ``ray.data.Dataset`` of rows with ``id_field`` and ``text_field``.
        model: The sparse model (hub name, local directory or bundled short name), loaded once
            per encoder actor.
        target: The target URI (see :mod:`sparsebridge.backends.targets`).
        options: Actors, GPUs and CPUs per actor, batch size, writers (:class:`RayOptions`).
        run: The run (:class:`~sparsebridge.ingest.options.RunOptions`, as for
            :func:`~sparsebridge.ingest.ingest`). Its ``run_dir`` is required: the checkpoint, the
            journal and the dead-letter file; on a multi-node cluster a directory every node can
            write (a shared file system). The dead-letter fraction is checked at the end. Another
            model recorded by the target is refused before the first write (the encoders report
            their model's identity).
        pruning: Which weights each vector keeps (:class:`~sparsebridge.ingest.options.Pruning`).
        backend_options: Keyword options of :func:`~sparsebridge.backends.open_backend`
            (``retry``, ``refresh``, ``api_key``, ``dense_size``, ...).
        dense_model: Also store a dense embedding from this sentence-transformers model
            (computed in the same actor; ``backend_options`` must give its ``dense_size``).
        trust_remote_code: Passed to transformers when loading the models.
        id_field: The id field of a file or Dataset.
        text_field: The text field of a file or Dataset.
        metadata_fields: The fields kept as metadata (None: every other field).
        **shortcuts: Any field of ``run`` or ``pruning`` as a keyword of its own (``run_dir=...``).

    Returns:
        The counters of this run (``written``, ``stale``, ``truncated``, ``retries``, ``read``
        count this driver's work; ``dead_lettered`` every dead letter of the run; ``skipped`` the
        items an earlier driver of the run journaled).

    Raises:
        MissingExtraError: ``ray[data]`` is not installed.
        InputError: Another run holds the run directory (its lock), or it cannot be written.
        SchemaMismatchError: The index or collection does not match (before any encoding), or
            records another model (before any write).
        DeadLetterLimitError: Too many dead-lettered items.
        BackendError: A fatal or persistent backend failure.

    Example:
        >>> ray_ingest("docs.jsonl", model="splade-tiny", target="opensearch://localhost/docs",
        ...            run_dir=Path("runs/docs"), options=RayOptions(actors=4))  # doctest: +SKIP
    """
    unknown_keywords(shortcuts, RunOptions, Pruning)
    run = grouped(run or RunOptions(), shortcuts)
    pruning = grouped(pruning or Pruning(), shortcuts)
    options = options or RayOptions()
    if run.run_dir is None:
        raise ValueError("the Ray engine needs a run directory (run_dir): its journal lives there")
    parsed = parse_target(target)
    if parsed.embedded and options.writers != 1:
        raise ValueError(f"an embedded target ({parsed.uri}) is opened by one process: use writers=1")
    backend_kwargs = dict(backend_options or {})
    if dense_model is not None and "dense_size" not in backend_kwargs:
        raise ValueError("a dense model needs backend_options['dense_size'] (its dimension)")
    fields = (id_field, text_field, metadata_fields)
    source, source_name = _source(data, fields)

    preflight = open_backend(parsed, **backend_kwargs)  # no I/O until it is used
    with Run.open(
        run, source=source_name, target=target_identity(preflight), writers=options.writers
    ) as state:
        # a wrong schema fails before any encoding; an embedded store admits one process: the
        # writer actor opens it once this copy is closed
        with preflight:
            preflight.ensure_schema()
        journal = run.run_dir / JOURNAL_DIR
        if not run.resume:
            shutil.rmtree(journal, ignore_errors=True)
        previous = Journal.load(journal)
        if state.done:
            logger.info("run %d is already complete; nothing to do", state.checkpoint.run_number)
            return state.stats

        if not ray.is_initialized():
            ray.init()
        session = uuid.uuid4().hex[:12]
        started = time.perf_counter()
        writers = start_writers(
            count=options.writers,
            embedded=parsed.embedded,
            target=target,
            backend_options=backend_kwargs,
            journal=journal,
            session=session,
            allow_model_mismatch=run.allow_model_mismatch,
        )
        try:
            models = Models(
                model=model,
                dense_model=dense_model,
                trust_remote_code=trust_remote_code,
                pruning=pruning,
                run_number=state.checkpoint.run_number,
                device="cuda" if options.gpus_per_actor > 0 else "cpu",
                threads=max(1, int(options.cpus_per_actor)),
            )
            encoded = read(data, source, options.rows, previous.keys, fields).map_batches(
                EncodeActor,
                fn_constructor_kwargs={"models": models},
                batch_size=1,  # one row: one batch of ``options.rows`` items
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=options.actors),
                num_gpus=options.gpus_per_actor,
                num_cpus=options.cpus_per_actor,
            )
            with _unwrapped():
                encoded.write_datasink(
                    BackendDatasink(writers), ray_remote_args={"num_cpus": 0}, concurrency=len(writers)
                )
                ray.get([writer.close.remote() for writer in writers])
        finally:
            for writer in writers:
                ray.kill(writer)
        state.restart(skipped=len(previous.keys))  # the journal holds every item done: count it in
        Journal.load(journal).count_into(state, session)
        return state.finish(None, elapsed_s=time.perf_counter() - started)


def _source(data: Any, fields: tuple[str, str, Sequence[str] | None]) -> tuple[ItemSource | None, str]:
    """The item source of a file (None for a Dataset) and the input's name for the checkpoint."""
    id_field, text_field, metadata_fields = fields
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.exists():
            raise InputError("input file does not exist", source=str(path))
        return open_source(
            path, id_field=id_field, text_field=text_field, metadata_fields=metadata_fields
        ), str(path)
    if isinstance(data, ItemSource):
        return data, input_name(data)
    if type(data).__name__ in ("Dataset", "MaterializedDataset") and hasattr(data, "map_batches"):
        return None, ""
    raise TypeError(
        f"data must be a file path, a source with items() or a ray.data.Dataset, not {type(data)}"
    )


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
