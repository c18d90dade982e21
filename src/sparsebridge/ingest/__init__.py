"""Ingestion: sources of documents, the overlapped encode-to-write pipeline, checkpoints, dead letters."""

from sparsebridge.ingest.checkpoint import Checkpoint, DeadLetter
from sparsebridge.ingest.pipeline import DeadLetterLimitError, IngestStats, ingest
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
    "check_source",
    "ingest",
    "open_source",
]
