"""Fixtures of the live-engine tests on the minibeir test data: its vectors, queries and exact reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from sparsebridge.backends import MemoryBackend, Record
from sparsebridge.encoder import Encoder
from sparsebridge.encoder.dense import DenseEncoder
from sparsebridge.eval import BeirDataset, load_beir
from sparsebridge.types import SparseVector

pytest.register_assert_rewrite("live_checks")

DATASET = Path(__file__).parents[1] / "data" / "minibeir"


@pytest.fixture(scope="module")
def dense() -> DenseEncoder:
    return DenseEncoder.load("minilm", device="cpu")


@pytest.fixture(scope="module")
def dataset() -> BeirDataset:
    return load_beir(DATASET)


@pytest.fixture(scope="module")
def records(encoder: Encoder, dense: DenseEncoder, dataset: BeirDataset) -> list[Record]:
    """The corpus with its sparse (splade-tiny) and dense (MiniLM) vectors."""
    documents = list(dataset.corpus.values())
    texts = [d.text for d in documents]
    sparse, embedded = encoder.encode_documents(texts), dense.encode_documents(texts)
    return [Record(d, s, e) for d, s, e in zip(documents, sparse, embedded, strict=True)]


@pytest.fixture(scope="module")
def exact(records: list[Record]) -> MemoryBackend:
    """The exact reference over :func:`records`."""
    reference = MemoryBackend()
    reference.write(records)
    return reference


@pytest.fixture(scope="module")
def texts(dataset: BeirDataset) -> list[str]:
    return list(dataset.queries.values())


@pytest.fixture(scope="module")
def dense_queries(dense: DenseEncoder, texts: list[str]) -> list[npt.NDArray[np.float32]]:
    return list(dense.encode_queries(texts))


@pytest.fixture(scope="module")
def sparse_queries(encoder: Encoder, texts: list[str]) -> list[SparseVector]:
    return list(encoder.encode_queries(texts))
