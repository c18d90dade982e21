"""sparsebridge: learned sparse retrieval (SPLADE) encoded fast and written into the engines you run.

Data flows one way: source -> :class:`Encoder` -> :class:`SparseVector` -> backend.
"""

from sparsebridge.backends import (
    Backend,
    MemoryBackend,
    QdrantBackend,
    QdrantTarget,
    Record,
    RetryPolicy,
    open_backend,
)
from sparsebridge.encoder import Encoder, Task
from sparsebridge.encoder.dense import DenseEncoder
from sparsebridge.errors import (
    BackendError,
    BackendUnavailableError,
    InputError,
    MissingExtraError,
    ModelLoadError,
    SchemaMismatchError,
    SparsebridgeError,
)
from sparsebridge.ingest import IngestStats, JsonlSource, ingest
from sparsebridge.query import Fusion, FusionMethod, HybridQuery
from sparsebridge.types import Document, SearchHit, SparseVector

__version__ = "0.1.0"

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
    "QdrantBackend",
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
