"""The Ray engine's workers: the encoder actors, the writer actors and the Datasink between.

::

    map_batches          ActorPoolStrategy(size=actors): each encoder actor loads the sparse (and
                         dense) model once, on its GPU when it has one, and runs encode_batch
    write_datasink       each write task hands its batch to one of ``writers`` writer actors,
                         which run write_batch on a sparsebridge backend (its retries, idempotent
                         ids, the run number as version) and then journal the batch
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
from ray.data.block import BlockAccessor
from ray.data.datasource import Datasink
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from sparsebridge.backends import open_backend
from sparsebridge.backends.model_identity import ModelIdentity, check_model
from sparsebridge.ingest.options import Pruning
from sparsebridge.ingest.ray.journal import JournalFile
from sparsebridge.ingest.ray.work import table, works
from sparsebridge.ingest.stages import TokenCounter, encode_batch, write_batch

__all__ = ["BackendDatasink", "EncodeActor", "Models", "Writer", "start_writers"]


@dataclass(frozen=True)
class Models:
    """What each encoder actor loads (the models travel by name, never pickled)."""

    model: str
    dense_model: str | None
    trust_remote_code: bool
    pruning: Pruning
    run_number: int
    device: str
    threads: int


class EncodeActor:
    """One per actor of the pool: loads the models once, then runs ``encode_batch`` on each batch."""

    def __init__(self, models: Models) -> None:
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

    def __call__(self, block: pa.Table) -> pa.Table:
        rows = works(block)
        for work in rows:
            work.model = self.identity
            batch = work.batch
            if self.tokens is not None:
                batch.truncated = sum(self.tokens.too_long(d.text) for _, d in batch.docs)
            encode_batch(
                batch,
                self.encoder,
                dense_encoder=self.dense,
                top_k=self.models.pruning.top_k,
                min_weight=self.models.pruning.min_weight,
                run_number=self.models.run_number,
            )
        return table(rows)


class Writer:
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
        self.journal = JournalFile(Path(journal), session, index)

    def write(self, block: pa.Table) -> int:
        rows = works(block)
        for work in rows:
            if work.model not in self.checked:  # as ingest() does, before the first write
                check_model(self.backend, work.model, record=True, allow_mismatch=self.allow_model_mismatch)
                self.checked.add(work.model)
            written = write_batch(work.batch, self.backend)  # a refused item becomes a dead letter
            self.journal.append(work, written)
        return len(rows)

    def close(self) -> None:
        self.journal.close()
        self.backend.close()


def start_writers(
    *,
    count: int,
    embedded: bool,
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
    actor = ray.remote(Writer)
    return [
        actor.options(**placement).remote(
            target, backend_options, str(journal), session, i, allow_model_mismatch
        )
        for i in range(count)
    ]


class BackendDatasink(Datasink[int]):
    """Hands each block to a writer actor and waits until it is written and journaled."""

    def __init__(self, writers: list[Any]) -> None:
        self._writers = writers

    def get_name(self) -> str:
        return "sparsebridge"

    def write(self, blocks: Iterable[Any], ctx: Any) -> int:
        writer = self._writers[ctx.task_idx % len(self._writers)]
        done = 0
        for block in blocks:
            rows = BlockAccessor.for_block(block).to_arrow()
            if rows.num_rows:
                done += int(ray.get(writer.write.remote(rows)))
        return done
