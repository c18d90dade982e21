"""PostgreSQL with pgvector: pure SQL builders and parsers (:mod:`.sql`) and the adapter (:mod:`.adapter`)."""

from sparsebridge.backends.postgres.adapter import PostgresBackend, PostgresTarget, PruneReport, SparseIndex

__all__ = ["PostgresBackend", "PostgresTarget", "PruneReport", "SparseIndex"]
