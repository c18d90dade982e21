"""The sparsebridge exception tree.

::

    SparsebridgeError                 base of everything raised on purpose
    ├── MissingExtraError             an optional dependency is not installed (names the extra)
    ├── ModelLoadError                the model name or path cannot be loaded
    ├── ModelOutputError              the model produced NaN or Inf (names the ``model``)
    ├── InputError                    bad user input; carries ``source`` and ``line`` when known
    │   └── DeadLetterLimitError      an ingest dead-lettered more than its allowed fraction
    └── BackendError                  a search engine refused or failed; carries ``backend``,
        │                             ``status`` and the affected ``item_ids``
        ├── BackendUnavailableError   the engine cannot be reached, or stayed overloaded or
        │                             blocked, after bounded retries (``reason`` says which)
        ├── SchemaMismatchError       an existing collection/index does not match what we need
        └── BulkWriteError            some items failed permanently (``failures``); the others
                                      were written

Every error is raised before any network call when the cause is local
(bad vectors, bad options, bad input). Every error pickles with its structured fields, so it
crosses process boundaries (multiprocessing, Ray) intact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sparsebridge.types import WriteStats

__all__ = [
    "BackendError",
    "BackendUnavailableError",
    "BulkWriteError",
    "DeadLetterLimitError",
    "InputError",
    "ItemFailure",
    "MissingExtraError",
    "ModelLoadError",
    "ModelOutputError",
    "SchemaMismatchError",
    "SparsebridgeError",
]


E = TypeVar("E", bound=BaseException)


def _rebuild(cls: type[E], args: tuple[Any, ...], state: dict[str, Any]) -> E:
    """Unpickle an error without calling its ``__init__`` (whose keyword-only fields pickle cannot pass)."""
    error = cls.__new__(cls, *args)
    BaseException.__init__(error, *args)
    error.__dict__.update(state)
    return error


class SparsebridgeError(Exception):
    """Base class of every error sparsebridge raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self.args, dict(self.__dict__))


class MissingExtraError(SparsebridgeError, ImportError):
    """An optional dependency is missing; the message says which extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed: it comes with sparsebridge's [{extra}] extra "
            f"(pip install '.[{extra}]' in a clone of sparsebridge)"
        )
        self.package = package
        self.extra = extra


class ModelLoadError(SparsebridgeError):
    """The model could not be loaded (unknown hub name, bad local path, offline without a cache)."""


class ModelOutputError(SparsebridgeError):
    """The model's output holds NaN or Inf; the message names the ``model`` and the likely causes."""

    def __init__(self, message: str, model: str) -> None:
        super().__init__(message)
        self.model = model


class InputError(SparsebridgeError, ValueError):
    """Bad input data, with its location when known (``source`` file and 1-based ``line``)."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None) -> None:
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(f"{where}{message}")
        self.source = source
        self.line = line


class DeadLetterLimitError(InputError):
    """More than the allowed fraction of an ingest's input was dead-lettered; the run stopped."""


class BackendError(SparsebridgeError):
    """A backend call failed. ``status`` is the engine's status code when there is one."""

    def __init__(
        self,
        message: str,
        *,
        backend: str,
        status: int | None = None,
        item_ids: Sequence[str] = (),
    ) -> None:
        super().__init__(f"[{backend}] {message}")
        self.backend = backend
        self.status = status
        self.item_ids = tuple(item_ids)


class BackendUnavailableError(BackendError):
    """The backend could not be reached, even after retries."""


class SchemaMismatchError(BackendError):
    """An existing collection or index has a schema that does not match the requested one."""


@dataclass(frozen=True)
class ItemFailure:
    """One item of a bulk write that failed: the document id, status, error type and reason."""

    id: str
    status: int
    type: str
    reason: str


class BulkWriteError(BackendError):
    """Some items of a write failed permanently (mapping or parsing errors); the others were written.

    ``stats`` (when the backend knows) counts what happened to the others: written, stale, retries.
    """

    def __init__(
        self,
        message: str,
        *,
        backend: str,
        failures: Sequence[ItemFailure],
        stats: WriteStats | None = None,
    ) -> None:
        super().__init__(message, backend=backend, item_ids=[f.id for f in failures])
        self.failures = tuple(failures)
        self.stats = stats
