from __future__ import annotations

import sparsebridge


def test_public_api_is_pinned() -> None:
    assert sorted(sparsebridge.__all__) == sorted(
        [
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
    )
    for name in sparsebridge.__all__:
        assert hasattr(sparsebridge, name), name
