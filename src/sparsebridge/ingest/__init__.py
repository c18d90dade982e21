"""Ingestion: sources of documents, the overlapped encode-to-write pipeline, checkpoints, dead letters.

Layout: :mod:`.sources` (input files and iterables), :mod:`.stages` (read, encode, write one
batch), :mod:`.options` (what a caller sets), :mod:`.run` (one run: stats, counters, checkpoint,
dead letters, the run dir), :mod:`.checkpoint` (the run dir's files), :mod:`.sink` (what a run
writes to), :mod:`.pipeline` (the threaded engine: :func:`ingest`), :mod:`.ray` (the Ray engine,
an extra), :mod:`.export` (vectors to a JSONL file), :mod:`.bench` (``sparsebridge bench ingest``).
"""

from sparsebridge.ingest.checkpoint import Checkpoint, DeadLetter
from sparsebridge.ingest.options import PipelineOptions, Pruning, RunOptions
from sparsebridge.ingest.pipeline import DeadLetterLimitError, IngestStats, ingest
from sparsebridge.ingest.sink import Sink
from sparsebridge.ingest.sources import (
    BadInput,
    CsvSource,
    DictSource,
    ItemSource,
    JsonlSource,
    ParquetSource,
    check_source,
    open_source,
)

__all__ = [
    "BadInput",
    "Checkpoint",
    "CsvSource",
    "DeadLetter",
    "DeadLetterLimitError",
    "DictSource",
    "IngestStats",
    "ItemSource",
    "JsonlSource",
    "ParquetSource",
    "PipelineOptions",
    "Pruning",
    "RunOptions",
    "Sink",
    "check_source",
    "ingest",
    "open_source",
]
