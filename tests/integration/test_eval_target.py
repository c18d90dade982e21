"""``eval`` measures a target that holds its corpus alone: a target holding other documents is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sparsebridge.backends import MemoryBackend, QdrantBackend, QdrantTarget, Record
from sparsebridge.backends.model_identity import ModelIdentity
from sparsebridge.errors import InputError
from sparsebridge.eval import load_beir, run_eval
from sparsebridge.types import Document, SparseVector

DATASET = Path(__file__).parents[1] / "data" / "minibeir"


def test_eval_refuses_a_target_that_holds_other_documents(encoder: Any, tmp_path: Path) -> None:
    dataset = load_beir(DATASET)
    backend = QdrantBackend(QdrantTarget("beir", path=str(tmp_path / "qdrant")))
    try:
        backend.ensure_schema()
        backend.write(
            [Record(Document("earlier-corpus-1", "an earlier corpus"), SparseVector.from_dict({7: 1.0}))]
        )
        with pytest.raises(InputError, match=r"already holds 1 document\(s\).*a new collection or index"):
            run_eval(dataset, encoder=encoder, backend=backend)
        assert backend.count() == 1  # nothing was written
    finally:
        backend.close()


def test_eval_into_an_empty_target_measures_its_corpus_alone(encoder: Any) -> None:
    dataset = load_beir(DATASET)
    backend = MemoryBackend()
    report = run_eval(dataset, encoder=encoder, backend=backend)
    assert backend.count() == len(dataset.corpus)
    assert report.modes["sparse"] == report.exact["sparse"]
    assert backend.stored_model() == ModelIdentity.of(encoder).to_json()  # type: ignore[union-attr]
    with pytest.raises(InputError, match=rf"already holds {len(dataset.corpus)} document\(s\)"):
        run_eval(dataset, encoder=encoder, backend=backend)  # a second eval into the same target
