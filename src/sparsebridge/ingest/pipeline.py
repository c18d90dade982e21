"""Encode documents in chunks and write them to a backend."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

from sparsebridge.backends.base import Backend, Record
from sparsebridge.encoder import Encoder
from sparsebridge.errors import InputError
from sparsebridge.types import Document

if TYPE_CHECKING:
    from sparsebridge.encoder.dense import DenseEncoder

__all__ = ["IngestStats", "ingest"]

logger = logging.getLogger(__name__)


@dataclass
class IngestStats:
    """What a run wrote: documents acknowledged by the backend, and batches."""

    written: int = 0
    batches: int = 0


def ingest(
    documents: Iterable[Document],
    *,
    encoder: Encoder,
    backend: Backend,
    batch_size: int = 256,
    top_k: int | None = None,
    min_weight: float = 0.0,
    on_batch: Callable[[int], None] | None = None,
    dense_encoder: DenseEncoder | None = None,
) -> IngestStats:
    """Check the backend's schema, then encode and write ``documents`` in batches of ``batch_size``.

    The schema is checked before any encoding, so a wrong existing collection fails in seconds.
    A document whose vector comes out empty stops the run with :class:`InputError` before its batch
    is written; the message says how many were already written, and a rerun rewrites the same ids
    (idempotent). With ``dense_encoder``, each batch is also embedded by it in the same pass and
    every record carries its dense vector (the backend must have a dense slot of that dimension).
    """
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    backend.ensure_schema()
    stats = IngestStats()
    for batch in _chunks(documents, batch_size):
        vectors = encoder.encode_documents([d.text for d in batch], top_k=top_k, min_weight=min_weight)
        empty = [d.id for d, v in zip(batch, vectors, strict=True) if len(v) == 0]
        if empty:
            raise InputError(
                f"{len(empty)} document(s) encode to an empty vector (no term weight above "
                f"{min_weight}): {empty[:5]}; {stats.written} documents were written before this stop"
            )
        if dense_encoder is None:
            records = [Record(d, v) for d, v in zip(batch, vectors, strict=True)]
        else:
            dense = dense_encoder.encode_documents([d.text for d in batch])
            records = [Record(d, v, e) for d, v, e in zip(batch, vectors, dense, strict=True)]
        backend.write(records)
        stats.written += len(batch)
        stats.batches += 1
        logger.info("batch %d: wrote %d documents (%d total)", stats.batches, len(batch), stats.written)
        if on_batch is not None:
            on_batch(len(batch))
    return stats


def _chunks(documents: Iterable[Document], size: int) -> Iterator[list[Document]]:
    iterator = iter(documents)
    while batch := list(islice(iterator, size)):
        yield batch
