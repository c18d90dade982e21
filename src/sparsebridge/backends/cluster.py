"""What the OpenSearch and Elasticsearch adapters share: the target, and the I/O around the bodies.

The bodies come from :mod:`sparsebridge.backends.rank_features` and the bulk loop from
:mod:`sparsebridge.backends.bulk`; a subclass only builds its client, reads its client's errors
and picks the query body. The search side (``_msearch`` batches of sparse, BM25 and dense legs,
client-side hybrid fusion) is shared too; a subclass gives its ``_msearch`` lines, dense clause and
mapping (``sparsebridge.query.opensearch`` / ``sparsebridge.query.elasticsearch``) and may fuse
natively (``_native_hybrid``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

from sparsebridge.backends import rank_features as bodies
from sparsebridge.backends.base import Record, WriteStats, point_id
from sparsebridge.backends.bulk import BulkItem, ItemResult, RequestFailure, bulk_write
from sparsebridge.backends.retry import FailureKind, RetryPolicy, call_with_retry, classify_failure
from sparsebridge.backends.validation import check_dense_slots, check_k, check_query, check_records
from sparsebridge.errors import BackendError, SchemaMismatchError
from sparsebridge.types import SearchHit, SparseVector

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from sparsebridge.query.fusion import Fusion
    from sparsebridge.query.hybrid import HybridQuery

__all__ = ["ClusterTarget", "Refresh", "SearchLeg"]

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
        dense_size: int | None = None,
        dense_field: str = "dense",
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
        self.field_type = None if field_type is None else bodies.FieldType(field_type)
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
        """The body ``ensure_schema`` sends to create the index (with the dense field if ``dense_size``)."""
        body = bodies.index_body(
            field=self.field,
            field_type=self._resolved_field_type(),
            shards=self.shards,
            replicas=self.replicas,
        )
        if self.dense_size is not None:
            mapping, settings = self._dense_mapping()
            body["mappings"]["properties"][self.dense_field] = mapping
            if settings:
                body.setdefault("settings", {}).setdefault("index", {}).update(settings)
        return body

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
        if self.dense_size is not None:
            self._require_dense_support()
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
        if self.dense_size is not None:
            wanted = self.index_body()["mappings"]["properties"][self.dense_field]
            have = properties.get("properties", {}).get(self.dense_field)
            size = {k: v for k, v in (have or {}).items() if k in ("type", "dimension", "dims")}
            if size != {k: v for k, v in wanted.items() if k in ("type", "dimension", "dims")}:
                problems.append(f"dense field {self.dense_field!r} is {have!r}, wanted {wanted!r}")
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

    # -- search side: many queries per round trip, BM25, dense and hybrid legs ----------------
    # Every leg is one body in an ``_msearch`` request (at most MSEARCH_BATCH bodies per request);
    # hybrid queries send all their legs in the same requests and are fused client-side with
    # sparsebridge.query.fusion, unless a subclass runs a native hybrid (_native_hybrid).

    def _msearch_lines(self, clause: Mapping[str, Any], size: int) -> list[dict[str, Any]]:
        """The ``_msearch`` header and body of one leg (the engine's builder)."""
        raise NotImplementedError

    def _dense_clause(self, vector: npt.NDArray[np.float32], k: int) -> dict[str, Any]:
        """The dense leg: the engine's knn clause/section on the dense field."""
        raise NotImplementedError

    def _dense_mapping(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The dense field's mapping and the index settings it needs."""
        raise NotImplementedError

    def _require_dense_support(self) -> None:
        """Raise if the cluster cannot hold a dense field (OpenSearch: the k-NN plugin)."""

    def _native_hybrid(
        self, legs: Sequence[Sequence[SearchLeg]], fusion: Fusion, k: int
    ) -> list[list[SearchHit]] | None:
        """Server-side fusion, where the subclass can and may; None: fuse the legs client-side."""
        return None

    def _sparse_clause(self, query: SparseVector) -> dict[str, Any] | None:
        """The sparse leg's query clause (as :meth:`search` sends it); None if no weight is sendable."""
        check_query(query)
        terms = bodies.query_features(query, max_terms=self.max_query_terms)
        if not terms:
            return None
        self._prepare()  # Elasticsearch: the field type comes from the server version
        clause: dict[str, Any] = self._query_body(terms, 1)["query"]
        return clause

    def _dense_queries(self, queries: Sequence[Any]) -> list[npt.NDArray[np.float32]]:
        from sparsebridge.query.hybrid import check_dense

        checked = [check_dense(q, what="dense query") for q in queries]
        if checked and self.dense_size is None:
            raise ValueError(
                f"the {self.name} backend has no dense field: open it with dense_size=<dimension>"
            )
        for vector in checked:
            if vector.shape[0] != self.dense_size:
                raise ValueError(f"dense query is {vector.shape[0]}-d; the index's is {self.dense_size}-d")
        if checked:
            self._require_dense_support()
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
        from sparsebridge.query.opensearch import match_clause  # the same DSL on both engines

        check_k(k)
        if isinstance(queries, str):
            raise TypeError("pass a list of query texts, not a single string")
        for text in queries:
            if not isinstance(text, str) or not text.strip():
                raise ValueError("a BM25 query text must be a non-blank string")
        return self._search_legs("text search", [SearchLeg(match_clause(t), k) for t in queries])

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
            "dense search", [SearchLeg(self._dense_clause(q, k), k, dense=True) for q in checked]
        )

    def search_hybrid_batch(
        self, queries: Sequence[HybridQuery], fusion: Fusion, *, k: int = 10
    ) -> list[list[SearchHit]]:
        """Fused top-``k`` hits for each hybrid query.

        Every leg of every query (``candidates`` hits each) goes out in ``_msearch`` requests, then
        the legs are fused client-side with :func:`sparsebridge.query.fusion.fuse`: the result
        equals the client-side fusion of the same legs fetched one by one. A subclass may fuse
        server-side instead where it was asked to and the cluster can (see the subclass).

        Raises:
            ValueError: The weights do not match a query's legs, or a dense leg is not possible.
            BackendError: The cluster cannot search dense vectors (OpenSearch without k-NN).
        """
        from sparsebridge.query.fusion import fuse

        check_k(k)
        for query in queries:
            fusion.leg_weights(len(query.legs))
        self._dense_queries([q.dense for q in queries if q.dense is not None])
        per_query = [self._hybrid_legs(q) for q in queries]
        native = self._native_hybrid(per_query, fusion, k)
        if native is not None:
            return native
        answers = iter(self._search_legs("hybrid legs", [leg for legs in per_query for leg in legs]))
        return [fuse([next(answers) for _ in legs], fusion, limit=k) for legs in per_query]

    def _hybrid_legs(self, query: HybridQuery) -> list[SearchLeg]:
        from sparsebridge.query.hybrid import LegKind
        from sparsebridge.query.opensearch import match_clause

        legs = []
        for kind in query.legs:
            if kind is LegKind.SPARSE:
                assert query.sparse is not None
                legs.append(SearchLeg(self._sparse_clause(query.sparse), query.candidates))
            elif kind is LegKind.DENSE:
                assert query.dense is not None
                clause = self._dense_clause(query.dense, query.candidates)
                legs.append(SearchLeg(clause, query.candidates, dense=True))
            else:
                assert query.text is not None
                legs.append(SearchLeg(match_clause(query.text), query.candidates))
        return legs

    def _search_legs(self, what: str, legs: Sequence[SearchLeg]) -> list[list[SearchHit]]:
        results: list[list[SearchHit]] = [[] for _ in legs]
        todo = [n for n, leg in enumerate(legs) if leg.clause is not None]
        for start in range(0, len(todo), MSEARCH_BATCH):
            chunk = todo[start : start + MSEARCH_BATCH]
            lines = [line for n in chunk for line in self._msearch_lines(legs[n].clause or {}, legs[n].size)]
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
                kind = classify_failure(error.info.status, error.info.type, error.info.reason)
                return kind in (FailureKind.TRANSIENT, FailureKind.BLOCKED)
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

    def count(self) -> int:
        """Number of documents in the index (as of its last refresh)."""
        return int(_plain(self._call("count", lambda: self.client.count(index=self.target.index)))["count"])

    def close(self) -> None:
        """Close the client's connections."""
        if self._client is not None:
            self._client.close()
            self._client = None


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
