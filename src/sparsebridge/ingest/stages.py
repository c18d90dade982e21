"""The stages of an ingest, each a plain function over a :class:`Batch`: read, encode, write.

::

    read_batches(source)      rows -> batches of documents and dead letters (bad input,
                              duplicate ids), with input positions; over-long texts counted
    encode_batch(batch)       documents -> records (sparse vector, dense embedding, run number);
                              an empty vector becomes a dead letter
    write_batch(batch)        records -> backend.write; items the engine refuses permanently
                              become dead letters

Each stage works on one batch and keeps no state between calls, so the threaded pipeline
(:func:`sparsebridge.ingest.ingest`) and the Ray pipeline (:mod:`sparsebridge.ingest.ray`) run the
same code: the same documents, the same records, the same dead letters.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sparsebridge.backends.base import Record, WriteStats
from sparsebridge.errors import BulkWriteError
from sparsebridge.ingest.checkpoint import DeadLetter
from sparsebridge.ingest.sink import Sink
from sparsebridge.ingest.sources import BadInput, ItemSource
from sparsebridge.types import Document

if TYPE_CHECKING:
    from sparsebridge.encoder import Encoder
    from sparsebridge.encoder.dense import DenseEncoder

__all__ = ["Batch", "TokenCounter", "encode_batch", "read_batches", "write_batch"]


@dataclass
class Batch:
    """Consecutive input items: the documents still to write and the items already dead-lettered.

    ``seq`` numbers the batches of a run from 0; ``end`` is the input position after the last item;
    ``size`` counts every item read into the batch (documents and bad input).
    """

    seq: int
    end: int
    docs: list[tuple[int, Document]] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    truncated: int = 0
    size: int = 0


class TokenCounter:
    """Tells whether a text is longer than the model's token limit (it will be truncated).

    Holds a private copy of the tokenizer: fast tokenizers are not shareable across threads.
    """

    def __init__(self, tokenizer: Any, max_tokens: int) -> None:
        self._tokenizer = copy.deepcopy(tokenizer)
        self.max_tokens = max_tokens

    @classmethod
    def for_encoder(cls, encoder: Encoder) -> TokenCounter | None:
        """A counter for ``encoder``'s model, or None for a model without one tokenizer and limit."""
        try:
            model: Any = encoder.model
            return cls(model.tokenizer, int(model.max_seq_length))
        except Exception:  # truncation is then not counted
            return None

    def too_long(self, text: str) -> bool:
        """Whether ``text`` has more tokens than the limit."""
        if len(text.encode("utf-8")) + 2 <= self.max_tokens:  # a token covers at least one byte
            return False
        return len(self._tokenizer(text, truncation=False, verbose=False)["input_ids"]) > self.max_tokens


def read_batches(
    source: ItemSource,
    *,
    batch_size: int,
    start: int = 0,
    tokens: TokenCounter | None = None,
    stopped: Callable[[], bool] = lambda: False,
) -> Iterator[Batch]:
    """Cut ``source.items()`` into batches of ``batch_size`` items, from input position ``start``.

    Bad input becomes a dead letter where it stands; a repeated id is a ``duplicate_id`` dead
    letter (the first occurrence wins, also when it lies before ``start``). ``stopped`` is asked
    before each item: when it answers True the batch read so far is the last.

    Example:
        >>> from sparsebridge.ingest import DictSource
        >>> rows = DictSource([{"id": 1, "text": "a"}, {"id": 1, "text": "b"}])
        >>> [(len(b.docs), [d.type for d in b.letters]) for b in read_batches(rows, batch_size=8)]
        [(1, ['duplicate_id'])]
    """
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    first_position: dict[str, int] = {}
    seq = 0
    batch = Batch(seq=seq, end=start)
    for position, item in enumerate(source.items()):
        if isinstance(item, Document):
            first = first_position.setdefault(item.id, position)
            if first != position:
                item = BadInput("duplicate_id", f"duplicate id {item.id!r} (first at item {first})", item.id)
        if position < start:
            continue
        if stopped():
            break
        if isinstance(item, BadInput):
            where = f"{item.source}:{item.line}: " if item.line is not None else ""
            batch.letters.append(DeadLetter(position, item.id, None, item.type, where + item.reason))
        else:
            batch.docs.append((position, item))
            if tokens is not None and tokens.too_long(item.text):
                batch.truncated += 1
        batch.end = position + 1
        batch.size += 1
        if batch.size >= batch_size:
            yield batch
            seq += 1
            batch = Batch(seq=seq, end=batch.end)
    if batch.docs or batch.letters:
        yield batch


def encode_batch(
    batch: Batch,
    encoder: Encoder,
    *,
    dense_encoder: DenseEncoder | None = None,
    top_k: int | None = None,
    min_weight: float = 0.0,
    run_number: int,
) -> None:
    """Encode ``batch.docs`` into ``batch.records`` (version ``run_number``); empty vectors: dead letters."""
    if not batch.docs:
        return
    texts = [d.text for _, d in batch.docs]
    vectors = encoder.encode_documents(texts, top_k=top_k, min_weight=min_weight)
    dense = dense_encoder.encode_documents(texts) if dense_encoder is not None else [None] * len(texts)
    for (position, document), vector, embedding in zip(batch.docs, vectors, dense, strict=True):
        if len(vector) == 0:
            reason = f"empty vector: no term weight above {min_weight}"
            batch.letters.append(DeadLetter(position, document.id, None, "empty_vector", reason))
        else:
            batch.records.append(Record(document, vector, embedding, version=run_number))


def write_batch(batch: Batch, backend: Sink) -> WriteStats:
    """Write ``batch.records``; items the engine refuses permanently become dead letters of the batch.

    Raises:
        BackendError: Anything else (fatal, blocked, retries exhausted): the batch is not done.
    """
    if not batch.records:
        return WriteStats()
    try:
        return backend.write(batch.records)
    except BulkWriteError as e:
        by_id = {d.id: p for p, d in batch.docs}
        for failure in e.failures:
            batch.letters.append(
                DeadLetter(
                    by_id.get(failure.id, -1), failure.id, failure.status, failure.type, failure.reason
                )
            )
        done = e.stats if e.stats is not None else WriteStats()
        if e.stats is None:
            done.written = len(batch.records) - len(e.failures)
        return done
