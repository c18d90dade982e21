"""Ingestion: sources of documents and the encode-to-write pipeline."""

from sparsebridge.ingest.pipeline import IngestStats, ingest
from sparsebridge.ingest.sources import JsonlSource, check_source

__all__ = ["IngestStats", "JsonlSource", "check_source", "ingest"]
