"""The adapter OpenSearch and Elasticsearch share, composed with an engine :class:`Dialect`.

:class:`LuceneBackend` does the I/O around the shared bodies (:mod:`.bodies`) and the ``_bulk``
loop (:mod:`.bulk`): schema check, writes, deletes, ``_msearch`` batches of sparse, BM25 and dense
legs, client-side hybrid fusion. What differs per engine (its client and error type, the sparse
query body, the dense field and leg, native hybrid fusion) comes from the dialect object it is
built with: :class:`~sparsebridge.backends.opensearch.OpenSearchDialect` or
:class:`~sparsebridge.backends.elasticsearch.ElasticsearchDialect`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from sparsebridge.backends.base import Record, WriteStats, point_id
from sparsebridge.backends.lucene import bodies
from sparsebridge.backends.lucene.bulk import BulkItem, ItemResult, RequestFailure, bulk_write
from sparsebridge.backends.model_identity import MODEL_KEY
from sparsebridge.backends.retry import RetryPolicy, call_with_retry, classify_failure, is_retryable
from sparsebridge.backends.validation import (
    check_dense_queries,
    check_dense_slots,
    check_k,
    check_query,
    check_records,
)
from sparsebridge.errors import BackendError, SchemaMismatchError
from sparsebridge.query.fusion import Fusion, fuse
from sparsebridge.query.hybrid import HybridQuery, LegKind
from sparsebridge.types import SearchHit, SparseVector

__all__ = ["ClusterTarget", "Dialect", "ErrorInfo", "LuceneBackend", "Refresh", "SearchLeg", "hits_of"]

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


class Dialect(Protocol):
    """What one engine adds to :class:`LuceneBackend`: its client, error type and own bodies.

    A dialect object belongs to one backend (it may cache what it read from that backend's
    cluster, such as the server version or the plugin list).
    """

    name: str

    def new_client(self, backend: LuceneBackend) -> Any:
        """Build the engine's client for ``backend.target`` (no request is sent)."""
        ...

    def error_info(self, error: BaseException) -> ErrorInfo | None:
        """The status/type/reason of a client error; None if ``error`` is not the client's."""
        ...

    def prepare(self, backend: LuceneBackend) -> None:
        """Checks made once, on first use, before any other request (e.g. the server version)."""
        ...

    def field_type(self) -> bodies.FieldType:
        """The sparse field's type (may be known only after :meth:`prepare`)."""
        ...

    def sparse_search(self, terms: Mapping[str, float], *, field: str, k: int) -> dict[str, Any]:
        """The search body of the exact dot product over ``terms`` (feature name -> weight)."""
        ...

    def msearch_lines(self, index: str, clause: Mapping[str, Any], size: int) -> list[dict[str, Any]]:
        """The ``_msearch`` header and body of one leg."""
        ...

    def dense_clause(self, vector: npt.NDArray[np.float32], *, k: int, field: str) -> dict[str, Any]:
        """The dense leg: the engine's knn clause/section on ``field``."""
        ...

    def dense_mapping(self, dimension: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """The dense field's mapping and the index settings it needs."""
        ...

    def dense_field_problem(self, have: Mapping[str, Any] | None, dimension: int) -> str | None:
        """Why an existing index's dense field mapping ``have`` cannot serve this dialect's dense leg."""
        ...

    def require_dense_support(self, backend: LuceneBackend) -> None:
        """Raise if the cluster cannot hold a dense field (OpenSearch: the k-NN plugin)."""
        ...

    def native_hybrid(
        self, backend: LuceneBackend, legs: Sequence[Sequence[SearchLeg]], fusion: Fusion, k: int
    ) -> list[list[SearchHit]] | None:
        """Server-side fusion where the dialect can and was asked to; None: fuse client-side."""
        ...


class LuceneBackend:
    """Write and search SPLADE vectors in an OpenSearch or Elasticsearch index, per its ``dialect``."""

    def __init__(
        self,
        target: ClusterTarget,
        *,
        field: str = "splade",
        max_query_terms: int = 1024,
        refresh: Refresh = Refresh.WAIT_FOR,
        shards: int | None = None,
        replicas: int | None = None,
        chunk_items: int = 500,
        chunk_bytes: int = 5 * 1024 * 1024,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        dense_size: int | None = None,
        dense_field: str = "dense",
        dialect: Dialect,
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
        if dense_size is not None and (isinstance(dense_size, bool) or dense_size <= 0):
            raise ValueError("dense_size must be a positive integer")
        if not dense_field or "." in dense_field or dense_field in (field, *bodies.PAYLOAD_FIELDS):
            raise ValueError(f"invalid dense field name {dense_field!r}")
        self.target = target
        self.field = field
        self.dialect = dialect
        self.name = dialect.name
        self.max_query_terms = max_query_terms
        self.refresh = Refresh(refresh)
        self.shards = shards
        self.replicas = replicas
        self.chunk_items = chunk_items
        self.chunk_bytes = chunk_bytes
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.dense_size = dense_size
        self.dense_field = dense_field
        self._client = client

    @property
    def field_type(self) -> bodies.FieldType:
        """The sparse field's type (Elasticsearch: chosen from the server version on first use)."""
        return self.dialect.field_type()

    def _prepare(self) -> None:
        self.dialect.prepare(self)

    def _error_info(self, error: BaseException) -> ErrorInfo | None:
        return self.dialect.error_info(error)

    # -- shared --------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The engine client, built on first use (constructors do no I/O)."""
        if self._client is None:
            self._client = self.dialect.new_client(self)
        return self._client

    def index_body(self) -> dict[str, Any]:
        """The body ``ensure_schema`` sends to create the index (with the dense field if ``dense_size``)."""
        body = bodies.index_body(
            field=self.field,
            field_type=self.field_type,
            shards=self.shards,
            replicas=self.replicas,
        )
        if self.dense_size is not None:
            mapping, settings = self.dialect.dense_mapping(self.dense_size)
            body["mappings"]["properties"][self.dense_field] = mapping
            if settings:
                body.setdefault("settings", {}).setdefault("index", {}).update(settings)
        return body

    def search_body(self, query: SparseVector, *, k: int = 10) -> dict[str, Any]:
        """The body ``search`` sends for ``query`` (pruned to ``max_query_terms``); no I/O."""
        check_query(query)
        check_k(k)
        terms = bodies.query_features(query, max_terms=self.max_query_terms)
        return self.dialect.sparse_search(terms, field=self.field, k=k)

    def _is_transient(self, error: BaseException) -> bool:
        info = self._error_info(error)
        return info is not None and is_retryable(classify_failure(info.status, info.type, info.reason))

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
        if self.dense_size is not None:
            self.dialect.require_dense_support(self)
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
        problems = bodies.mapping_problems(properties, field=self.field, field_type=self.field_type)
        if self.dense_size is not None:
            have = properties.get("properties", {}).get(self.dense_field)
            problem = self.dialect.dense_field_problem(have, self.dense_size)
            if problem is not None:
                problems.append(f"dense field {self.dense_field!r}: {problem} (it is {have!r})")
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

        Every record is validated and turned into NDJSON before the first request. A record with a
        ``version`` is written with external versioning; a 409 version conflict (the index holds the
        same or a newer version) counts in ``WriteStats.stale``, not as an error.
        """
        check_records(records)
        check_dense_slots(records, size=self.dense_size, slot=f"the index's {self.dense_field!r} field")
        items = [
            BulkItem(
                r.document.id,
                bodies.bulk_index_lines(
                    r.document,
                    r.vector,
                    doc_key=point_id(r.document.id),
                    field=self.field,
                    version=r.version,
                    dense=None if r.dense is None else (self.dense_field, r.dense.tolist()),
                ),
            )
            for r in records
        ]
        if not items:
            return WriteStats()
        stats = self._bulk(items)
        logger.debug(
            "%s: wrote %d documents (%d retries, %d stale)",
            self.name,
            stats.written,
            stats.retries,
            stats.stale,
        )
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
        body = self.dialect.sparse_search(terms, field=self.field, k=k)
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

    # -- search side: many queries per round trip, BM25, dense and hybrid legs ----------------
    # Every leg is one body in an ``_msearch`` request (at most MSEARCH_BATCH bodies per request);
    # hybrid queries send all their legs in the same requests and are fused client-side with
    # sparsebridge.query.fusion, unless a subclass runs a native hybrid (_native_hybrid).

    def _sparse_clause(self, query: SparseVector) -> dict[str, Any] | None:
        """The sparse leg's query clause (as :meth:`search` sends it); None if no weight is sendable."""
        check_query(query)
        terms = bodies.query_features(query, max_terms=self.max_query_terms)
        if not terms:
            return None
        self._prepare()  # Elasticsearch: the field type comes from the server version
        clause: dict[str, Any] = self.dialect.sparse_search(terms, field=self.field, k=1)["query"]
        return clause

    def _dense_queries(self, queries: Sequence[Any]) -> list[npt.NDArray[np.float32]]:
        checked = check_dense_queries(
            queries, size=self.dense_size, slot=f"the {self.name} index's {self.dense_field!r} field"
        )
        if checked:
            self.dialect.require_dense_support(self)
        return checked

    def search_batch(self, queries: Sequence[SparseVector], *, k: int = 10) -> list[list[SearchHit]]:
        """Top-``k`` documents by dot product for each query, many queries per ``_msearch`` request.

        Each query's body is the one :meth:`search` sends; a query with no sendable weight gets no hits.
        """
        check_k(k)
        legs = [SearchLeg(self._sparse_clause(q), k) for q in queries]
        return self._search_legs("search", legs)

    def search_text_batch(self, queries: Sequence[str], *, k: int = 10) -> list[list[SearchHit]]:
        """Top-``k`` documents by BM25 (a ``match`` on the ``text`` field) for each query text.

        Raises:
            ValueError: A query text is blank.
        """
        check_k(k)
        if isinstance(queries, str):
            raise TypeError("pass a list of query texts, not a single string")
        for text in queries:
            if not isinstance(text, str) or not text.strip():
                raise ValueError("a BM25 query text must be a non-blank string")
        return self._search_legs("text search", [SearchLeg(bodies.match_clause(t), k) for t in queries])

    def search_dense_batch(
        self, queries: Sequence[npt.NDArray[np.float32]], *, k: int = 10
    ) -> list[list[SearchHit]]:
        """Top-``k`` documents for each dense query; the score is the cosine similarity.

        The engines score cosine as ``(1 + cos) / 2``; it is mapped back to ``cos``. Their knn
        search is approximate (HNSW).

        Raises:
            ValueError: The backend was opened without ``dense_size``, or a dimension differs.
            BackendError: The cluster cannot search dense vectors (OpenSearch without k-NN).
        """
        check_k(k)
        checked = self._dense_queries(queries)
        return self._search_legs(
            "dense search",
            [
                SearchLeg(self.dialect.dense_clause(q, k=k, field=self.dense_field), k, dense=True)
                for q in checked
            ],
        )

    def search_hybrid_batch(
        self, queries: Sequence[HybridQuery], fusion: Fusion, *, k: int = 10
    ) -> list[list[SearchHit]]:
        """Fused top-``k`` hits for each hybrid query.

        Every leg of every query (``candidates`` hits each) goes out in ``_msearch`` requests, then
        the legs are fused client-side with :func:`sparsebridge.query.fusion.fuse`: the result
        equals the client-side fusion of the same legs fetched one by one. A subclass may fuse
        server-side instead where it was asked to and the cluster can (see the dialect).

        Raises:
            ValueError: The weights do not match a query's legs, or a dense leg is not possible.
            BackendError: The cluster cannot search dense vectors (OpenSearch without k-NN).
        """
        check_k(k)
        for query in queries:
            fusion.leg_weights(len(query.legs))
        self._dense_queries([q.dense for q in queries if q.dense is not None])
        per_query = [self._hybrid_legs(q) for q in queries]
        native = self.dialect.native_hybrid(self, per_query, fusion, k)
        if native is not None:
            return native
        answers = iter(self._search_legs("hybrid legs", [leg for legs in per_query for leg in legs]))
        return [fuse([next(answers) for _ in legs], fusion, limit=k) for legs in per_query]

    def _hybrid_legs(self, query: HybridQuery) -> list[SearchLeg]:
        legs = []
        for kind in query.legs:
            if kind is LegKind.SPARSE:
                assert query.sparse is not None
                legs.append(SearchLeg(self._sparse_clause(query.sparse), query.candidates))
            elif kind is LegKind.DENSE:
                assert query.dense is not None
                clause = self.dialect.dense_clause(query.dense, k=query.candidates, field=self.dense_field)
                legs.append(SearchLeg(clause, query.candidates, dense=True))
            else:
                assert query.text is not None
                legs.append(SearchLeg(bodies.match_clause(query.text), query.candidates))
        return legs

    def _search_legs(self, what: str, legs: Sequence[SearchLeg]) -> list[list[SearchHit]]:
        results: list[list[SearchHit]] = [[] for _ in legs]
        todo = [n for n, leg in enumerate(legs) if leg.clause is not None]
        for start in range(0, len(todo), MSEARCH_BATCH):
            chunk = todo[start : start + MSEARCH_BATCH]
            lines = [
                line
                for n in chunk
                for line in self.dialect.msearch_lines(self.target.index, legs[n].clause or {}, legs[n].size)
            ]
            for n, answer in zip(chunk, self._msearch(what, lines), strict=True):
                results[n] = hits_of(answer, dense=legs[n].dense)
        return results

    def _msearch(self, what: str, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send one ``_msearch``; retry it whole (searches are idempotent) on transient failures."""
        index = self.target.index

        def send() -> list[dict[str, Any]]:
            answers = [dict(a) for a in _plain(self.client.msearch(body=lines, index=index))["responses"]]
            for answer in answers:
                if "error" in answer:
                    status = answer.get("status")
                    info = error_info_from_body(status if isinstance(status, int) else None, answer, "")
                    raise _SearchItemError(info)
            return answers

        def is_transient(error: BaseException) -> bool:
            if isinstance(error, _SearchItemError):
                return is_retryable(classify_failure(error.info.status, error.info.type, error.info.reason))
            return self._is_transient(error)

        self._prepare()
        try:
            return call_with_retry(
                send, policy=self.retry, is_transient=is_transient, backend=self.name, what=what
            )
        except BackendError:
            raise
        except Exception as e:
            info = e.info if isinstance(e, _SearchItemError) else self._error_info(e)
            if info is None:
                raise
            if info.status == 404:
                message = f"index {self.target.index!r} does not exist (ingest into it first)"
            else:
                message = f"{what} failed: {info.status} {info.type}: {info.reason}"
            raise BackendError(message, backend=self.name, status=info.status) from e

    def _meta(self) -> dict[str, Any] | None:
        """The index mapping's ``_meta`` (None: no such index)."""
        index = self.target.index
        try:
            mapping = _plain(self._call("get mapping", lambda: self.client.indices.get_mapping(index=index)))
        except BackendError as e:
            if e.status == 404:
                return None
            raise
        index_mapping: dict[str, Any] = next(iter(mapping.values()), {})
        meta = index_mapping.get("mappings", {}).get("_meta", {})
        return dict(meta) if isinstance(meta, Mapping) else {}

    def stored_model(self) -> dict[str, Any] | None:
        """The model identity in the index mapping's ``_meta`` (None: none, or no index)."""
        found = (self._meta() or {}).get(MODEL_KEY)
        return dict(found) if isinstance(found, Mapping) else None

    def store_model(self, identity: Mapping[str, Any]) -> None:
        """Record the model identity in the index mapping's ``_meta`` (other ``_meta`` keys are kept)."""
        meta = {**(self._meta() or {}), MODEL_KEY: dict(identity)}
        index = self.target.index
        self._call(
            "record the model", lambda: self.client.indices.put_mapping(index=index, body={"_meta": meta})
        )

    def count(self) -> int:
        """Number of documents in the index (as of its last refresh)."""
        return int(_plain(self._call("count", lambda: self.client.count(index=self.target.index)))["count"])

    def close(self) -> None:
        """Close the client's connections."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> LuceneBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


MSEARCH_BATCH = 200  # search bodies per _msearch request


@dataclass(frozen=True)
class SearchLeg:
    """One search of a batch: its query clause (None: nothing to send, no hits), size, dense or not."""

    clause: dict[str, Any] | None
    size: int
    dense: bool = False


class _SearchItemError(Exception):
    """One search of an ``_msearch`` answered an error (raised to retry or report it)."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(f"{info.status} {info.type}: {info.reason}")
        self.info = info


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


def _plain(response: Any) -> dict[str, Any]:
    body = getattr(response, "body", response)  # elasticsearch-py wraps bodies in ObjectApiResponse
    return dict(body)
