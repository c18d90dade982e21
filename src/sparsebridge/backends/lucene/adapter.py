"""The backend OpenSearch and Elasticsearch share: all of their I/O, with an engine :class:`Dialect`.

:class:`LuceneBackend` sends the shared bodies (:mod:`.bodies`) and runs the ``_bulk`` loop
(:mod:`.bulk`): schema check, writes, deletes, ``_msearch`` batches of sparse, BM25 and dense legs,
client-side hybrid fusion. What differs per engine (its client, the sparse query, the dense field
and leg, what to find out about the cluster, native hybrid fusion) comes from the dialect object
it is built with (:mod:`.dialect`), as bodies and exchanges that this backend sends:
:class:`~sparsebridge.backends.opensearch.OpenSearchDialect` or
:class:`~sparsebridge.backends.elasticsearch.ElasticsearchDialect`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, Self, TypeVar

import numpy as np
import numpy.typing as npt

from sparsebridge.backends.base import Record, WriteStats, point_id
from sparsebridge.backends.lucene import bodies
from sparsebridge.backends.lucene.bulk import BulkItem, ItemResult, RequestFailure, bulk_write
from sparsebridge.backends.lucene.dialect import (
    Answer,
    Dialect,
    ErrorInfo,
    Exchange,
    Request,
    Search,
    SearchLeg,
    error_info_from_body,
    hits_of,
)
from sparsebridge.backends.lucene.options import LuceneOptions, Refresh
from sparsebridge.backends.lucene.target import ClusterTarget, cluster_location
from sparsebridge.backends.model_identity import MODEL_KEY
from sparsebridge.backends.retry import RetryPolicy, call_with_retry, classify_failure, is_retryable
from sparsebridge.backends.targets import Engine, Target
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

__all__ = ["MSEARCH_BATCH", "LuceneBackend"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

MSEARCH_BATCH = 200  # search bodies per _msearch request


class _AnsweredError(Exception):
    """The engine answered an error (to a raw request or one search of an ``_msearch``)."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(f"{info.status} {info.type}: {info.reason}")
        self.info = info


class LuceneBackend:
    """Write and search SPLADE vectors in an OpenSearch or Elasticsearch index, per its ``dialect``.

    ``options`` (a :class:`~sparsebridge.backends.lucene.options.LuceneOptions`) and any keyword
    of it given directly (``replicas=0``) configure it; ``location`` is the parsed target URI
    (built from ``target`` when not given); ``client`` replaces the one the dialect would build.
    No I/O happens here.
    """

    def __init__(
        self,
        target: ClusterTarget,
        *,
        dialect: Dialect,
        options: LuceneOptions | None = None,
        location: Target | None = None,
        client: Any = None,
        **option_values: Any,
    ) -> None:
        if not isinstance(target, ClusterTarget):
            raise TypeError(f"target must be a ClusterTarget, got {type(target).__name__}")
        self.target = target
        self.options = dataclasses.replace(options or LuceneOptions(), **option_values)
        self.dialect = dialect
        self.name = dialect.name
        self.location = location if location is not None else cluster_location(Engine(dialect.name), target)
        self._client = client
        self._closed = False
        self._opened = False
        self._open_lock = threading.Lock()

    # The options callers read most (the connectors ask for dense_size).
    @property
    def field(self) -> str:
        return self.options.field

    @property
    def dense_size(self) -> int | None:
        return self.options.dense_size

    @property
    def dense_field(self) -> str:
        return self.options.dense_field

    @property
    def refresh(self) -> Refresh:
        return self.options.refresh

    @property
    def retry(self) -> RetryPolicy:
        return self.options.retry

    @property
    def field_type(self) -> bodies.FieldType:
        """The sparse field's type (Elasticsearch: chosen when the backend first talks to the node)."""
        return self.dialect.field_type()

    @property
    def client(self) -> Any:
        """The engine client, built on first use (constructors do no I/O)."""
        if self._closed:
            raise BackendError(
                f"the backend for {self.location.uri} is closed; open a new one", backend=self.name
            )
        if self._client is None:
            self._client = self.dialect.new_client(self.target, timeout=self.options.timeout)
        return self._client

    # -- running the dialect's exchanges -----------------------------------------------------------

    def _open(self) -> None:
        """Once, before any other request: what the dialect needs to find out about the cluster."""
        if self._opened:
            return
        with self._open_lock:
            if not self._opened:
                self._run(self.dialect.open())
                self._opened = True
                logger.info("%s: %s", self.name, self.dialect.describe())

    def describe(self) -> str:
        """The engine, and the sparse field and query this backend uses (talks to the node once)."""
        self._open()
        return self.dialect.describe()

    def _run(self, exchange: Exchange[T]) -> T:
        """Send what ``exchange`` asks for, one request at a time; return its result."""
        try:
            step = next(exchange)
            while True:
                if isinstance(step, Search):
                    answer: Any = self._search_once(step)
                else:
                    answer = self._request(step)
                step = exchange.send(answer)
        except StopIteration as stop:
            result: T = stop.value
            return result

    def _request(self, request: Request) -> Answer:
        def send() -> Answer:
            answer = self.dialect.perform(self.client, request)
            if not answer.ok and answer.status not in request.accept:
                raise _AnsweredError(error_info_from_body(answer.status, answer.body, ""))
            return answer

        return self._call(request.what, send)

    def _search_once(self, search: Search) -> dict[str, Any]:
        index = self.target.index
        extra = {"params": dict(search.params)} if search.params else {}
        return _plain(
            self._call(search.what, lambda: self.client.search(index=index, body=search.body, **extra))
        )

    def _error_info(self, error: BaseException) -> ErrorInfo | None:
        if isinstance(error, _AnsweredError):
            return error.info
        return self.dialect.error_info(error)

    def _is_transient(self, error: BaseException) -> bool:
        info = self._error_info(error)
        return info is not None and is_retryable(classify_failure(info.status, info.type, info.reason))

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one request with the retry policy; an engine error becomes a ``BackendError``."""
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

    def _missing_index(self, error: BackendError) -> BackendError:
        if error.status != 404:
            return error
        return BackendError(
            f"index {self.target.index!r} does not exist (ingest into it first)",
            backend=self.name,
            status=404,
        )

    # -- schema ------------------------------------------------------------------------------------

    def index_body(self) -> dict[str, Any]:
        """The body ``ensure_schema`` sends to create the index (with the dense field if ``dense_size``)."""
        body = bodies.index_body(
            field=self.field,
            field_type=self.field_type,
            shards=self.options.shards,
            replicas=self.options.replicas,
        )
        if self.dense_size is not None:
            mapping, settings = self.dialect.dense_mapping(self.dense_size)
            body["mappings"]["properties"][self.dense_field] = mapping
            if settings:
                body.setdefault("settings", {}).setdefault("index", {}).update(settings)
        return body

    def _require_dense_support(self) -> None:
        problem = self._run(self.dialect.dense_support())
        if problem is not None:
            raise BackendError(problem, backend=self.name)

    def ensure_schema(self) -> None:
        """Create the index, or check that the existing one has the fields this backend needs.

        Raises:
            SchemaMismatchError: The index exists with another mapping (names the differences).
        """
        self._open()
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

    # -- writes ------------------------------------------------------------------------------------

    def _send_bulk(self, body: str) -> list[ItemResult]:
        self._open()
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
            status = int(outcome["status"])
            if isinstance(outcome.get("error"), Mapping):  # the cause too: Elasticsearch wraps it
                info = error_info_from_body(status, outcome, "")
                results.append(ItemResult(status, info.type, info.reason))
            else:
                results.append(ItemResult(status))
        return results

    def _bulk(self, items: Sequence[BulkItem], *, ignore_status: frozenset[int] = frozenset()) -> WriteStats:
        return bulk_write(
            items,
            send=self._send_bulk,
            backend=self.name,
            policy=self.retry,
            max_items=self.options.chunk_items,
            max_bytes=self.options.chunk_bytes,
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

    # -- search ------------------------------------------------------------------------------------

    def search_body(self, query: SparseVector, *, k: int = 10) -> dict[str, Any]:
        """The body ``search`` sends for ``query`` (pruned to ``max_query_terms``); no I/O."""
        check_query(query)
        check_k(k)
        terms = bodies.query_features(query, max_terms=self.options.max_query_terms)
        return self.dialect.sparse_search(terms, field=self.field, k=k)

    def search(self, query: SparseVector, *, k: int = 10) -> list[SearchHit]:
        """Top-``k`` documents by dot product, best first, with the original ids and payloads."""
        check_query(query)
        check_k(k)
        terms = bodies.query_features(query, max_terms=self.options.max_query_terms)
        if not terms:
            return []
        self._open()
        body = self.dialect.sparse_search(terms, field=self.field, k=k)
        try:
            response = self._search_once(Search(body, "search"))
        except BackendError as e:
            raise self._missing_index(e) from e
        return hits_of(response)

    # Every leg is one body in an ``_msearch`` request (at most MSEARCH_BATCH bodies per request);
    # hybrid queries send all their legs in the same requests and are fused client-side with
    # sparsebridge.query.fusion, unless the dialect runs a native hybrid.

    def _sparse_clause(self, query: SparseVector) -> dict[str, Any] | None:
        """The sparse leg's query clause (as :meth:`search` sends it); None if no weight is sendable."""
        check_query(query)
        terms = bodies.query_features(query, max_terms=self.options.max_query_terms)
        if not terms:
            return None
        self._open()  # Elasticsearch: the field type and query come from the node
        clause: dict[str, Any] = self.dialect.sparse_search(terms, field=self.field, k=1)["query"]
        return clause

    def _dense_queries(self, queries: Sequence[Any]) -> list[npt.NDArray[np.float32]]:
        checked = check_dense_queries(
            queries, size=self.dense_size, slot=f"the {self.name} index's {self.dense_field!r} field"
        )
        if checked:
            self._open()
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
        equals the client-side fusion of the same legs fetched one by one. The dialect may fuse
        server-side instead where it was asked to and the cluster can.

        Raises:
            ValueError: The weights do not match a query's legs, or a dense leg is not possible.
            BackendError: The cluster cannot search dense vectors (OpenSearch without k-NN).
        """
        check_k(k)
        for query in queries:
            fusion.leg_weights(len(query.legs))
        self._dense_queries([q.dense for q in queries if q.dense is not None])
        per_query = [self._hybrid_legs(q) for q in queries]
        native = self._run(self.dialect.native_hybrid(per_query, fusion, k))
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
                for line in bodies.msearch_body(
                    self.target.index, [legs[n].clause or {}], size=legs[n].size, source=bodies.PAYLOAD_FIELDS
                )
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
                    raise _AnsweredError(
                        error_info_from_body(status if isinstance(status, int) else None, answer, "")
                    )
            return answers

        self._open()
        try:
            return self._call(what, send)
        except BackendError as e:
            raise self._missing_index(e) from e

    # -- index metadata ----------------------------------------------------------------------------

    def _meta(self) -> dict[str, Any] | None:
        """The index mapping's ``_meta`` (None: no such index)."""
        self._open()
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
        self._open()
        return int(_plain(self._call("count", lambda: self.client.count(index=self.target.index)))["count"])

    def close(self) -> None:
        """Close the client's connections; later calls raise :class:`~sparsebridge.errors.BackendError`."""
        self._closed = True
        if self._client is not None:
            self._client.close()
            self._client = None

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            f"a {type(self).__name__} cannot be pickled (it holds a live client): pass its target "
            f"({self.location.uri}) and open a backend in each process"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _plain(response: Any) -> dict[str, Any]:
    body = getattr(response, "body", response)  # elasticsearch-py wraps bodies in ObjectApiResponse
    return dict(body)
