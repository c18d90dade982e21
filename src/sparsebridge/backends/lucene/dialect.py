"""What an engine plug-in gives the Lucene backend: request bodies, exchanges and client hooks; no I/O.

A :class:`Dialect` (OpenSearch's or Elasticsearch's) never sends anything itself. It builds bodies,
and where it has to talk to the cluster (read the server version, list the plugins, run a native
hybrid query) it returns an :data:`Exchange`: a generator that yields the :class:`Request` or
:class:`Search` it needs and receives each answer. The backend runs the exchange: it sends each
request through the client (with its retries and error handling) and passes the answer back.
The dialect's client hooks (:meth:`Dialect.new_client`, :meth:`Dialect.perform`,
:meth:`Dialect.error_info`) are the only code that knows the engine's client library.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from sparsebridge.backends.lucene import bodies
from sparsebridge.backends.lucene.target import ClusterTarget
from sparsebridge.query.fusion import Fusion
from sparsebridge.types import SearchHit

__all__ = [
    "Answer",
    "Dialect",
    "ErrorInfo",
    "Exchange",
    "Request",
    "Search",
    "SearchLeg",
    "done",
    "error_info_from_body",
    "hits_of",
]

T = TypeVar("T")


@dataclass(frozen=True)
class ErrorInfo:
    """A client error read as (status, type, reason); ``status`` None when there was no answer."""

    status: int | None
    type: str
    reason: str


def error_info_from_body(status: int | None, body: Any, fallback: str) -> ErrorInfo:
    """Read the engine's ``{"error": {"type", "reason"}}`` answer (or any other shape) into ErrorInfo."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        reason = str(error.get("reason", ""))
        causes = error.get("root_cause")
        cause = causes[0] if isinstance(causes, list) and causes else error.get("caused_by")
        if isinstance(cause, Mapping) and cause.get("reason") and cause.get("reason") != reason:
            # "all shards failed" says nothing: the root cause says what (e.g. the result window)
            reason = f"{reason} ({cause.get('type', '')}: {cause['reason']})"
        return ErrorInfo(status, str(error.get("type", "")), reason)
    if isinstance(error, str):
        return ErrorInfo(status, error, fallback)
    return ErrorInfo(status, "", fallback)


@dataclass(frozen=True)
class Request:
    """One raw HTTP request of an exchange, sent with the dialect's :meth:`Dialect.perform` hook.

    ``accept``: the non-2xx statuses the exchange wants to read itself (a probe that may be
    refused); any other failure is retried if transient, else raised as a ``BackendError`` that
    names ``what``.
    """

    method: str
    path: str
    what: str
    params: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    accept: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Search:
    """A search on the backend's index (``client.search``), answered with the response body."""

    body: dict[str, Any]
    what: str
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """The answer to a :class:`Request`: its HTTP status and parsed body."""

    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


# A dialect's conversation with the cluster: yields what to send, receives the answer
# (Answer for a Request, the response body for a Search), returns its result.
Exchange = Generator[Request | Search, Any, T]


def done(value: T) -> Exchange[T]:
    """An exchange that sends nothing and returns ``value``."""
    if False:  # a generator function that yields nothing
        yield Request("GET", "/", what="nothing")
    return value


@dataclass(frozen=True)
class SearchLeg:
    """One search of a batch: its query clause (None: nothing to send, no hits), size, dense or not."""

    clause: dict[str, Any] | None
    size: int
    dense: bool = False


def hits_of(answer: Mapping[str, Any], *, dense: bool = False) -> list[SearchHit]:
    """The hits of one search answer; a dense leg's ``(1 + cos) / 2`` score is mapped back to ``cos``."""
    return [
        SearchHit(
            id=str(hit["_source"]["doc_id"]),
            score=2.0 * float(hit["_score"]) - 1.0 if dense else float(hit["_score"]),
            payload=hit["_source"],
        )
        for hit in answer["hits"]["hits"]
    ]


class Dialect(Protocol):
    """What one engine adds to :class:`~sparsebridge.backends.lucene.LuceneBackend`.

    A dialect object belongs to one backend: it keeps what its exchanges read from that backend's
    cluster (the server version, the plugin list, the sparse query chosen).
    """

    name: str

    # -- client hooks: the only code that knows the engine's client library ----------------------

    def new_client(self, target: ClusterTarget, *, timeout: float) -> Any:
        """Build the engine's client for ``target`` (no request is sent)."""
        ...

    def perform(self, client: Any, request: Request) -> Answer:
        """Send a raw request; return its status and body (raise only when nothing answered)."""
        ...

    def error_info(self, error: BaseException) -> ErrorInfo | None:
        """The status/type/reason of a client error; None if ``error`` is not the client's."""
        ...

    # -- exchanges -------------------------------------------------------------------------------

    def open(self) -> Exchange[None]:
        """What to find out once, before any other request (e.g. the server version)."""
        ...

    def dense_support(self) -> Exchange[str | None]:
        """Why the cluster cannot hold a dense field (OpenSearch: no k-NN plugin), or None."""
        ...

    def native_hybrid(
        self, legs: Sequence[Sequence[SearchLeg]], fusion: Fusion, k: int
    ) -> Exchange[list[list[SearchHit]] | None]:
        """Server-side fusion where the dialect can and was asked to; None: fuse client-side."""
        ...

    # -- bodies ----------------------------------------------------------------------------------

    def describe(self) -> str:
        """The engine and the sparse field and query in use (after :meth:`open`)."""
        ...

    def field_type(self) -> bodies.FieldType:
        """The sparse field's type (may be known only after :meth:`open`)."""
        ...

    def sparse_search(self, terms: Mapping[str, float], *, field: str, k: int) -> dict[str, Any]:
        """The search body of the exact dot product over ``terms`` (feature name -> weight)."""
        ...

    def dense_clause(self, vector: npt.NDArray[np.float32], *, k: int, field: str) -> dict[str, Any]:
        """The dense leg: the engine's knn query clause, or its top-level ``knn`` section."""
        ...

    def dense_mapping(self, dimension: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """The dense field's mapping and the index settings it needs."""
        ...

    def dense_field_problem(self, have: Mapping[str, Any] | None, dimension: int) -> str | None:
        """Why an existing index's dense field mapping ``have`` cannot serve this dialect's dense leg."""
        ...
