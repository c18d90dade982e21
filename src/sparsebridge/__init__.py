"""sparsebridge: learned sparse retrieval (SPLADE) encoded fast and written into the engines you run.

Data flows one way: source -> :class:`Encoder` -> :class:`SparseVector` -> backend.

``import sparsebridge`` stays cheap: the encoders (and with them PyTorch and transformers) are
imported on first use of ``sparsebridge.Encoder``, ``Task`` or ``DenseEncoder``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sparsebridge.backends import (
    Backend,
    MemoryBackend,
    QdrantBackend,
    QdrantEdgeBackend,
    QdrantEdgeTarget,
    QdrantTarget,
    Record,
    RetryPolicy,
    open_backend,
)
from sparsebridge.errors import (
    BackendError,
    BackendUnavailableError,
    InputError,
    MissingExtraError,
    ModelLoadError,
    ModelOutputError,
    SchemaMismatchError,
    SparsebridgeError,
)
from sparsebridge.ingest import IngestStats, JsonlSource, ingest
from sparsebridge.query import Fusion, FusionMethod, HybridQuery
from sparsebridge.types import Document, SearchHit, SparseVector

if TYPE_CHECKING:
    from sparsebridge.encoder import Encoder, Task
    from sparsebridge.encoder.dense import DenseEncoder

__version__ = "0.1.0"

_LAZY = {
    "Encoder": "sparsebridge.encoder",
    "Task": "sparsebridge.encoder",
    "DenseEncoder": "sparsebridge.encoder.dense",
}

__all__ = [
    "Backend",
    "BackendError",
    "BackendUnavailableError",
    "DenseEncoder",
    "Document",
    "Encoder",
    "Fusion",
    "FusionMethod",
    "HybridQuery",
    "IngestStats",
    "InputError",
    "JsonlSource",
    "MemoryBackend",
    "MissingExtraError",
    "ModelLoadError",
    "ModelOutputError",
    "QdrantBackend",
    "QdrantEdgeBackend",
    "QdrantEdgeTarget",
    "QdrantTarget",
    "Record",
    "RetryPolicy",
    "SchemaMismatchError",
    "SearchHit",
    "SparseVector",
    "SparsebridgeError",
    "Task",
    "__version__",
    "ingest",
    "open_backend",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sparsebridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
