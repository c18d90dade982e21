"""What ingestion needs from where it writes: the write side of a backend.

Every :class:`~sparsebridge.backends.Backend` is a :class:`Sink`; so is anything else with a name,
``ensure_schema`` and ``write`` (the evaluation runner writes through one that copies each record to
the exact reference). A sink that also records its model
(:class:`~sparsebridge.backends.model_identity.SupportsModelIdentity`) is checked against the
encoder's model before any encoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from sparsebridge.backends.base import Record
from sparsebridge.types import WriteStats

__all__ = ["Sink"]


@runtime_checkable
class Sink(Protocol):
    """A place records are written to (see :class:`~sparsebridge.backends.Backend` for the contract)."""

    name: str

    def ensure_schema(self) -> None:
        """Create the collection or index, or check that the existing one matches; raise otherwise."""
        ...

    def write(self, records: Sequence[Record]) -> WriteStats:
        """Upsert ``records``; returns once the engine acknowledged all of them."""
        ...
