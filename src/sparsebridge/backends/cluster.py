"""What the OpenSearch and Elasticsearch adapters share: the target, and the I/O around the bodies.

The bodies come from :mod:`sparsebridge.backends.rank_features` and the bulk loop from
:mod:`sparsebridge.backends.bulk`; a subclass only builds its client, reads its client's errors
and picks the query body.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from sparsebridge.backends import rank_features as bodies
from sparsebridge.backends.base import Record, WriteStats, point_id
from sparsebridge.backends.bulk import BulkItem, ItemResult, RequestFailure, bulk_write
from sparsebridge.backends.retry import FailureKind, RetryPolicy, call_with_retry, classify_failure
from sparsebridge.backends.validation import check_k, check_query, check_records
from sparsebridge.errors import BackendError, SchemaMismatchError
from sparsebridge.types import SearchHit, SparseVector

__all__ = ["ClusterTarget", "Refresh"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Lowercase; no \ / * ? " < > | space , # :; not starting with - _ +; not . or ..
_INDEX_NAME = re.compile(r"^(?!\.{1,2}$)[a-z0-9.][a-z0-9._-]{0,254}$")


class Refresh(str, Enum):
    """When written documents become searchable: the engines' ``refresh`` parameter of ``_bulk``.

    ``WAIT_FOR`` (default): ``write`` returns once they are searchable (like Qdrant's ``wait=True``).
    ``NONE``: at the next periodic refresh (1 s by default): fastest for large loads.
    ``TRUE``: force a refresh per request (costly; small tests only).
    """

    WAIT_FOR = "wait_for"
    NONE = "false"
    TRUE = "true"


@dataclass(frozen=True)
class ClusterTarget:
    """An index on an OpenSearch or Elasticsearch cluster, and how to connect to it.

    ``url`` is ``http(s)://host:port``; ``username``/``password`` for basic auth (both or neither);
    ``ca_certs`` a CA bundle path for TLS; ``verify_certs=False`` turns certificate checks off.
    """

    index: str
    url: str
    username: str | None = None
    password: str | None = None
    api_key: str | None = None
    ca_certs: str | None = None
    verify_certs: bool = True

    def __post_init__(self) -> None:
        if not _INDEX_NAME.match(self.index):
            raise ValueError(
                f"invalid index name {self.index!r} (lowercase letters, digits, '.', '_', '-'; "
                "not starting with '_' or '-')"
            )
        if not re.match(r"^https?://[^/\s]+$", self.url):
            raise ValueError(f"url must be http(s)://host:port, got {self.url!r}")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        if self.api_key is not None and self.username is not None:
            raise ValueError("give an API key or a username/password, not both")
        if (self.ca_certs is not None or not self.verify_certs) and not self.url.startswith("https://"):
            raise ValueError("ca_certs and verify_certs apply to https:// targets only")

    def __repr__(self) -> str:  # never print secrets
        auth = "basic" if self.username else "api_key" if self.api_key else "none"
        return f"ClusterTarget(index={self.index!r}, url={self.url!r}, auth={auth})"


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
        return ErrorInfo(status, str(error.get("type", "")), str(error.get("reason", "")))
    if isinstance(error, str):
        return ErrorInfo(status, error, fallback)
    return ErrorInfo(status, "", fallback)


class ClusterBackend:
    """Shared adapter logic for OpenSearch and Elasticsearch (subclasses: the client and its errors)."""

    name = "cluster"

    def __init__(
        self,
        target: ClusterTarget,
        *,
        field: str = "splade",
        field_type: bodies.FieldType | None = bodies.FieldType.RANK_FEATURES,
        max_query_terms: int = 1024,
        refresh: Refresh = Refresh.WAIT_FOR,
        shards: int | None = None,
        replicas: int | None = None,
        chunk_items: int = 500,
        chunk_bytes: int = 5 * 1024 * 1024,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        client: Any = None,
    ) -> None:
        if not isinstance(target, ClusterTarget):
            raise TypeError(f"target must be a ClusterTarget, got {type(target).__name__}")
        bodies.check_field_name(field)
        Refresh(refresh)
        if isinstance(max_query_terms, bool) or not isinstance(max_query_terms, int) or max_query_terms <= 0:
            raise ValueError(f"max_query_terms must be a positive integer, got {max_query_terms!r}")
        if shards is not None and shards <= 0:
            raise ValueError("shards must be positive")
        if replicas is not None and replicas < 0:
            raise ValueError("replicas must be >= 0")
        if chunk_items <= 0 or chunk_bytes <= 0:
            raise ValueError("chunk_items and chunk_bytes must be positive")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.target = target
        self.field = field
        self.field_type = None if field_type is None else bodies.FieldType(field_type)
        self.max_query_terms = max_query_terms
        self.refresh = Refresh(refresh)
        self.shards = shards
        self.replicas = replicas
        self.chunk_items = chunk_items
        self.chunk_bytes = chunk_bytes
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._client = client

    # -- what a subclass provides ------------------------------------------------------------

    def _new_client(self) -> Any:
        raise NotImplementedError

    def _error_info(self, error: BaseException) -> ErrorInfo | None:
        """The status/type/reason of a client error; None if ``error`` is not the client's."""
        raise NotImplementedError

    def _prepare(self) -> None:
        """Checks made once, on first use, before any other request (e.g. the server version)."""

    def _query_body(self, terms: Mapping[str, float], k: int) -> dict[str, Any]:
        if self._resolved_field_type() is bodies.FieldType.SPARSE_VECTOR:
            return bodies.sparse_vector_search(terms, field=self.field, k=k)
        return bodies.rank_features_search(terms, field=self.field, k=k)

    def _resolved_field_type(self) -> bodies.FieldType:
        if self.field_type is None:
            raise ValueError(
                "field_type is chosen from the server version on first use; pass field_type= to build "
                "bodies without a server"
            )
        return self.field_type

    # -- shared --------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The engine client, built on first use (constructors do no I/O)."""
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def index_body(self) -> dict[str, Any]:
        """The body ``ensure_schema`` sends to create the index."""
        return bodies.index_body(
            field=self.field,
            field_type=self._resolved_field_type(),
            shards=self.shards,
            replicas=self.replicas,
        )

    def search_body(self, query: SparseVector, *, k: int = 10) -> dict[str, Any]:
        """The body ``search`` sends for ``query`` (pruned to ``max_query_terms``); no I/O."""
        check_query(query)
        check_k(k)
        return self._query_body(bodies.query_features(query, max_terms=self.max_query_terms), k)

    def _is_transient(self, error: BaseException) -> bool:
        info = self._error_info(error)
        return info is not None and classify_failure(info.status, info.type, info.reason) in (
            FailureKind.TRANSIENT,
            FailureKind.BLOCKED,
        )

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        self._prepare()
        try:
            return call_with_retry(
                fn, policy=self.retry, is_transient=self._is_transient, backend=self.name, what=what
            )
        except BackendError:
            raise
        except Exception as e:
            info = self._error_info(e)
            if info is None:
                raise
            raise BackendError(
                f"{what} failed: {info.status} {info.type}: {info.reason}",
                backend=self.name,
                status=info.status,
            ) from e

    def ensure_schema(self) -> None:
        """Create the index, or check that the existing one has the fields this backend needs.

        Raises:
            SchemaMismatchError: The index exists with another mapping (names the differences).
        """
        self._prepare()
        index = self.target.index
        body = self.index_body()
        if not self._call("index check", lambda: bool(self.client.indices.exists(index=index))):
            try:
                self._call("create index", lambda: self.client.indices.create(index=index, body=body))
                logger.info("%s: created index %r", self.name, index)
                return
            except BackendError as e:
                if "resource_already_exists_exception" not in str(e):
                    raise
        mapping = _plain(self._call("get mapping", lambda: self.client.indices.get_mapping(index=index)))
        index_mapping: dict[str, Any] = next(iter(mapping.values()), {})
        properties = index_mapping.get("mappings", {})
        problems = bodies.mapping_problems(
            properties, field=self.field, field_type=self._resolved_field_type()
        )
        if problems:
            raise SchemaMismatchError(
                f"index {index!r} exists with another schema: " + "; ".join(problems), backend=self.name
            )

    def _send_bulk(self, body: str) -> list[ItemResult]:
        self._prepare()
        try:
            response = _plain(
                self.client.bulk(index=self.target.index, body=body, refresh=self.refresh.value)
            )
        except Exception as e:
            info = self._error_info(e)
            if info is None:
                raise
            raise RequestFailure(info.status, info.type, info.reason) from e
        results = []
        for entry in response.get("items", []):
            (outcome,) = entry.values()
            error = outcome.get("error")
            if isinstance(error, Mapping):
                results.append(
                    ItemResult(
                        int(outcome["status"]), str(error.get("type", "")), str(error.get("reason", ""))
                    )
                )
            else:
                results.append(ItemResult(int(outcome["status"])))
        return results

    def _bulk(self, items: Sequence[BulkItem], *, ignore_status: frozenset[int] = frozenset()) -> WriteStats:
        return bulk_write(
            items,
            send=self._send_bulk,
            backend=self.name,
            policy=self.retry,
            max_items=self.chunk_items,
            max_bytes=self.chunk_bytes,
            ignore_status=ignore_status,
        )

    def write(self, records: Sequence[Record]) -> WriteStats:
        """Upsert records under ``_id`` = :func:`~sparsebridge.backends.base.point_id` of the document id.

        Every record is validated and turned into NDJSON before the first request.
        """
        check_records(records)
        items = [
            BulkItem(
                r.document.id,
                bodies.bulk_index_lines(
                    r.document, r.vector, doc_key=point_id(r.document.id), field=self.field
                ),
            )
            for r in records
        ]
        if not items:
            return WriteStats()
        stats = self._bulk(items)
        logger.debug("%s: wrote %d documents (%d retries)", self.name, stats.written, stats.retries)
        return stats

    def delete(self, document_ids: Sequence[str]) -> None:
        """Delete by document id; ids that are not there are ignored."""
        if isinstance(document_ids, str):
            raise TypeError("pass a list of document ids, not a single string")
        items = [BulkItem(i, bodies.bulk_delete_line(point_id(i))) for i in document_ids]
        if items:
            self._bulk(items, ignore_status=frozenset({404}))

    def search(self, query: SparseVector, *, k: int = 10) -> list[SearchHit]:
        """Top-``k`` documents by dot product, best first, with the original ids and payloads."""
        check_query(query)
        check_k(k)
        terms = bodies.query_features(query, max_terms=self.max_query_terms)
        if not terms:
            return []
        self._prepare()
        body = self._query_body(terms, k)
        try:
            response = _plain(
                self._call("search", lambda: self.client.search(index=self.target.index, body=body))
            )
        except BackendError as e:
            if e.status != 404:
                raise
            raise BackendError(
                f"index {self.target.index!r} does not exist (ingest into it first)",
                backend=self.name,
                status=404,
            ) from e
        return [
            SearchHit(id=str(hit["_source"]["doc_id"]), score=float(hit["_score"]), payload=hit["_source"])
            for hit in response["hits"]["hits"]
        ]

    def count(self) -> int:
        """Number of documents in the index (as of its last refresh)."""
        return int(_plain(self._call("count", lambda: self.client.count(index=self.target.index)))["count"])

    def close(self) -> None:
        """Close the client's connections."""
        if self._client is not None:
            self._client.close()
            self._client = None


def _plain(response: Any) -> dict[str, Any]:
    body = getattr(response, "body", response)  # elasticsearch-py wraps bodies in ObjectApiResponse
    return dict(body)
