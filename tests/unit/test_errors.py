"""Every public exception survives pickle with its message and structured fields (process boundaries)."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest

from sparsebridge import errors
from sparsebridge.backends.base import WriteStats

SAMPLES: dict[str, Callable[[], BaseException]] = {
    "SparsebridgeError": lambda: errors.SparsebridgeError("something failed"),
    "MissingExtraError": lambda: errors.MissingExtraError("qdrant-client", "qdrant"),
    "ModelLoadError": lambda: errors.ModelLoadError("no such model"),
    "ModelOutputError": lambda: errors.ModelOutputError("NaN in the output", "some/model"),
    "InputError": lambda: errors.InputError("bad line", source="docs.jsonl", line=3),
    "DeadLetterLimitError": lambda: errors.DeadLetterLimitError("too many", source="docs.jsonl"),
    "BackendError": lambda: errors.BackendError("refused", backend="opensearch", status=400, item_ids=["a"]),
    "BackendUnavailableError": lambda: errors.BackendUnavailableError("gone", backend="qdrant", status=None),
    "SchemaMismatchError": lambda: errors.SchemaMismatchError("other schema", backend="qdrant"),
    "BulkWriteError": lambda: errors.BulkWriteError(
        "2 items failed",
        backend="elasticsearch",
        failures=[errors.ItemFailure("a", 400, "mapper_parsing_exception", "bad value")],
        stats=WriteStats(written=5, retries=1, stale=2),
    ),
}


def test_every_public_exception_has_a_sample() -> None:
    public = {
        name
        for name in errors.__all__
        if isinstance(getattr(errors, name), type) and issubclass(getattr(errors, name), BaseException)
    }
    assert public == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_exception_round_trips_through_pickle(name: str) -> None:
    error = SAMPLES[name]()
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.args == error.args
    assert vars(copy) == vars(error)
