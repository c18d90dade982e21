"""A Ray row: one batch of the single-process pipeline, with the journal key of each of its items.

Ray never splits or merges a row, so every encoder call sees the texts
:func:`~sparsebridge.ingest.ingest` would give it. Rows travel pickled in a one-column Arrow table.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

from sparsebridge.backends.model_identity import ModelIdentity
from sparsebridge.ingest.checkpoint import DeadLetter
from sparsebridge.ingest.stages import Batch

__all__ = ["Work", "table", "works"]


@dataclass
class Work:
    """One batch on its way through the stages, with the journal key of each of its items.

    ``doc_keys`` follow ``batch.docs``, ``letter_keys`` the dead letters the batch was read with;
    a dead letter added later (an empty vector, a refusal) takes the key of its document.
    """

    batch: Batch
    doc_keys: list[str]
    letter_keys: list[str]
    model: ModelIdentity | None = None  # set by the encoder actor

    def keys(self) -> list[str]:
        """The journal key of every item of the batch."""
        return [*self.doc_keys, *self.letter_keys]

    def letters(self) -> list[tuple[str, DeadLetter]]:
        """Every dead letter of the batch with its journal key."""
        of_id = {d.id: key for (_, d), key in zip(self.batch.docs, self.doc_keys, strict=True)}
        keys = [*self.letter_keys, *(of_id[d.id or ""] for d in self.batch.letters[len(self.letter_keys) :])]
        return list(zip(keys, self.batch.letters, strict=True))


def table(rows: Iterable[Work]) -> pa.Table:
    """Rows as a Ray block."""
    pickled = [pickle.dumps(w, protocol=pickle.HIGHEST_PROTOCOL) for w in rows]
    return pa.table({"work": pa.array(pickled, pa.binary())})


def works(block: pa.Table) -> list[Work]:
    """The rows of a Ray block."""
    return [pickle.loads(b) for b in block.column("work").to_pylist()]
