"""Vectors to a file: encode a checked JSONL input into a JSONL file of sparse vectors.

The input is checked whole before any work (:func:`checked_jsonl`); the output appears whole or
not at all (it is written next to its place and renamed at the end). One output line per document:
``{"id", "indices", "values"}`` (:meth:`~sparsebridge.types.SparseVector.to_json_dict`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from sparsebridge.errors import InputError, SparsebridgeError
from sparsebridge.ingest.options import Pruning
from sparsebridge.ingest.sources import JsonlSource, check_source
from sparsebridge.ingest.stages import TokenCounter
from sparsebridge.types import Document, SparseVector

if TYPE_CHECKING:
    from sparsebridge.encoder import Encoder

__all__ = ["checked_jsonl", "export_vectors"]


def checked_jsonl(
    path: Path,
    *,
    id_field: str = "id",
    text_field: str = "text",
    metadata_fields: Sequence[str] | None = None,
) -> JsonlSource:
    """The JSONL source at ``path``, after one full pass that refuses bad input before any work.

    Raises:
        InputError: Bad lines (each listed), or no documents.
    """
    source = JsonlSource(path, id_field, text_field, metadata_fields)
    count, errors = check_source(source)
    if errors:
        details = "\n".join(f"  {e}" for e in errors)
        raise InputError(f"{len(errors)} bad input line(s), nothing was written:\n{details}")
    if count == 0:
        raise InputError("no documents", source=str(path))
    return source


def export_vectors(
    source: JsonlSource,
    output: Path,
    *,
    load_encoder: Callable[[], Encoder],
    queries: bool = False,
    pruning: Pruning | None = None,
    batch_size: int | None = None,
    allow_empty_vectors: bool = False,
) -> str:
    """Encode every document of ``source`` into ``output``; returns a one-line summary.

    The output file is opened before ``load_encoder`` is called, so a path that cannot be written
    fails before the model loads.

    Args:
        source: A checked input (:func:`checked_jsonl`).
        output: The JSONL file of vectors.
        load_encoder: Loads the encoder (called once, after the output was opened).
        queries: Use the model's query path.
        pruning: Which weights each vector keeps.
        batch_size: Texts per encoder call (default: the encoder's ``suggested_batch_size``).
        allow_empty_vectors: Write documents whose vector is empty (by default they are refused
            and nothing is written).

    Raises:
        InputError: A document encodes to an empty vector (nothing written).
        SparsebridgeError: ``output`` cannot be written (nothing written).
    """
    pruning = pruning or Pruning()
    partial = output.with_name(output.name + ".partial")
    try:
        out = partial.open("w", encoding="utf-8")
    except OSError as e:
        raise SparsebridgeError(f"cannot write {output}: {e.strerror}") from None
    try:
        with out:
            encoder = load_encoder()
            encode = encoder.encode_queries if queries else encoder.encode_documents
            tokens = TokenCounter.for_encoder(encoder)
            size = batch_size or encoder.suggested_batch_size
            batch: list[Document] = []
            count = truncated = 0
            for document in source:
                batch.append(document)
                count += 1
                truncated += tokens is not None and tokens.too_long(document.text)
                if len(batch) == size:
                    _write_batch(out, batch, encode, pruning, allow_empty_vectors)
                    batch = []
            if batch:
                _write_batch(out, batch, encode, pruning, allow_empty_vectors)
        partial.replace(output)  # the output appears whole or not at all
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise SparsebridgeError(f"cannot write {output}: {e.strerror}; nothing was written") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    summary = f"encoded {count} texts into {output}"
    if tokens is not None:
        summary += f"; {truncated} longer than the model's limit of {tokens.max_tokens} tokens, truncated"
    return summary


def _write_batch(
    out: IO[str],
    batch: list[Document],
    encode: Callable[..., list[SparseVector]],
    pruning: Pruning,
    allow_empty: bool,
) -> None:
    vectors = encode([d.text for d in batch], top_k=pruning.top_k, min_weight=pruning.min_weight)
    empty = [d.id for d, v in zip(batch, vectors, strict=True) if len(v) == 0]
    if empty and not allow_empty:
        raise InputError(
            f"{len(empty)} document(s) encode to an empty vector (no weight above --min-weight "
            f"{pruning.min_weight}), e.g. {', '.join(repr(i) for i in empty[:5])}; nothing was written "
            "(--allow-empty-vectors writes them)"
        )
    for document, vector in zip(batch, vectors, strict=True):
        out.write(json.dumps({"id": document.id, **vector.to_json_dict()}) + "\n")
