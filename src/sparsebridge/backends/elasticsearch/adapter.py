"""Elasticsearch indices with a ``rank_features`` or ``sparse_vector`` field, through elasticsearch-py.

The client's major version must equal the server's (elasticsearch-py 9.x talks to Elasticsearch 9
only; it sends ``compatible-with=9`` headers that an 8.x server refuses). On first use the backend
reads ``GET /`` without those headers and refuses a mismatch, or an OpenSearch server, with an
error that says which client to install.

Field types (:class:`~sparsebridge.backends.lucene.bodies.FieldType`):

- ``rank_features`` (ES >= 7.12): queried as ``bool.should`` of ``rank_feature`` clauses with
  ``linear`` and ``boost`` = query weight (the same DSL as OpenSearch; checked live there).
- ``sparse_vector`` (ES >= 8.15): queried with the ``sparse_vector`` query and ``"prune": false``
  (indices created on 8.19/9.1+ prune query tokens by default, which is not exact).

By default (``field_type=None``) the server version chooses: ``sparse_vector`` from 8.15 on,
``rank_features`` before. Feature names, weights, ids and payload are as for OpenSearch.

Search side: many queries per ``_msearch`` request (sparse, BM25 ``match`` on ``text``, dense
``knn`` on a ``dense_vector`` field with ``dense_size=``). Hybrid queries send all their legs in
``_msearch`` and fuse them client-side with :mod:`sparsebridge.query.fusion`; with
``licensed=True`` (the ``rrf`` and ``linear`` retrievers need an Enterprise license) RRF and
min-max fuse server-side instead, where Elasticsearch's definition equals ours.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from sparsebridge.backends.elasticsearch import bodies as es_bodies
from sparsebridge.backends.lucene import bodies
from sparsebridge.backends.lucene.adapter import (
    ClusterTarget,
    ErrorInfo,
    LuceneBackend,
    Refresh,
    SearchLeg,
    error_info_from_body,
    hits_of,
)
from sparsebridge.backends.retry import RetryPolicy, call_with_retry
from sparsebridge.errors import BackendError, MissingExtraError
from sparsebridge.query.fusion import Fusion, FusionMethod, fuse
from sparsebridge.types import SearchHit

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

__all__ = ["ElasticsearchBackend", "ElasticsearchDialect", "check_server_version"]

_SPARSE_VECTOR_SINCE = (8, 15)
_LINEAR_RANK_FEATURE_SINCE = (7, 12)


def _elasticsearch() -> Any:
    try:
        import elasticsearch
    except ImportError as e:
        raise MissingExtraError("elasticsearch", "elasticsearch") from e
    return elasticsearch


def _version(text: str) -> tuple[int, int]:
    match = re.match(r"^(\d+)\.(\d+)", text)
    if not match:
        raise ValueError(f"unreadable version {text!r}")
    return int(match.group(1)), int(match.group(2))


def check_server_version(
    info: Any, *, client_version: str, field_type: bodies.FieldType | None
) -> bodies.FieldType:
    """Check a ``GET /`` answer against the client's version; return the field type to use.

    Args:
        info: The server's ``GET /`` body.
        client_version: The installed elasticsearch-py version (``"9.5.1"``).
        field_type: The requested field type, or None to choose from the server version.

    Raises:
        BackendError: The server is not Elasticsearch, its major differs from the client's, or it
            is too old for the requested field type.
    """
    version = info.get("version", {}) if isinstance(info, dict) else {}
    number = str(version.get("number", "?"))
    if version.get("distribution") == "opensearch":
        raise BackendError(
            f"the server is OpenSearch {number}, not Elasticsearch: use an opensearch:// target "
            "(elasticsearch-py cannot talk to OpenSearch)",
            backend="elasticsearch",
        )
    try:
        server = _version(number)
    except ValueError as e:
        raise BackendError(
            f"the server did not report an Elasticsearch version: {info!r}", backend="elasticsearch"
        ) from e
    client = _version(client_version)
    if server[0] != client[0]:
        raise BackendError(
            f"Elasticsearch {number} needs elasticsearch-py {server[0]}.x, but {client_version} is "
            f"installed: pip install 'elasticsearch>={server[0]},<{server[0] + 1}'",
            backend="elasticsearch",
        )
    if field_type is None:
        field_type = (
            bodies.FieldType.SPARSE_VECTOR
            if server >= _SPARSE_VECTOR_SINCE
            else bodies.FieldType.RANK_FEATURES
        )
    since = (
        _SPARSE_VECTOR_SINCE if field_type is bodies.FieldType.SPARSE_VECTOR else _LINEAR_RANK_FEATURE_SINCE
    )
    if server < since:
        raise BackendError(
            f"{field_type.value} with exact scoring needs Elasticsearch >= {since[0]}.{since[1]}; the "
            f"server is {number}",
            backend="elasticsearch",
        )
    return field_type


class ElasticsearchDialect:
    """Elasticsearch for :class:`~sparsebridge.backends.lucene.LuceneBackend` (elasticsearch-py).

    One instance per backend: on first use it reads the server version once (without the client's
    compatibility headers), refuses a mismatch, and resolves the field type from it.
    """

    name = "elasticsearch"

    def __init__(self, *, field_type: bodies.FieldType | None = None, licensed: bool = False) -> None:
        self.requested_field_type = None if field_type is None else bodies.FieldType(field_type)
        self.licensed = bool(licensed)
        self._field_type = self.requested_field_type
        self._checked = False
        self._lock = threading.Lock()

    def new_client(self, backend: LuceneBackend) -> Any:
        target = backend.target
        return _elasticsearch().Elasticsearch(
            target.url,
            basic_auth=(target.username, target.password) if target.username is not None else None,
            api_key=target.api_key,
            verify_certs=target.verify_certs,
            ssl_show_warn=target.verify_certs,
            ca_certs=target.ca_certs,
            request_timeout=backend.timeout,
            max_retries=0,  # our RetryPolicy is the only retry layer
            retry_on_timeout=False,
            http_compress=True,
        )

    def error_info(self, error: BaseException) -> ErrorInfo | None:
        elasticsearch = _elasticsearch()
        from elastic_transport import TransportError  # installed with the elasticsearch extra

        if isinstance(error, elasticsearch.ApiError):
            return error_info_from_body(error.meta.status, error.body, str(error.message))
        if isinstance(error, TransportError):  # connection refused, timeout, TLS: no answer at all
            return ErrorInfo(None, type(error).__name__, str(error))
        return None

    def prepare(self, backend: LuceneBackend) -> None:
        """Once: read the server version (without compatibility headers) and check it."""
        if self._checked:
            return
        with self._lock:
            if self._checked:
                return
            client = backend.client
            response = call_with_retry(
                lambda: client.transport.perform_request(
                    "GET",
                    "/",
                    # the client's own headers (its Authorization), without its compatibility Accept
                    headers={**getattr(client, "_headers", {}), "accept": "application/json"},
                ),
                policy=backend.retry,
                is_transient=backend._is_transient,
                backend=self.name,
                what="version check",
            )
            status = response.meta.status
            if not 200 <= status < 300:
                info = error_info_from_body(status, response.body, "")
                raise BackendError(
                    f"version check failed: {status} {info.type}: {info.reason}",
                    backend=self.name,
                    status=status,
                )
            self._field_type = check_server_version(
                response.body,
                client_version=_elasticsearch().__versionstr__,
                field_type=self.requested_field_type,
            )
            self._checked = True

    def field_type(self) -> bodies.FieldType:
        if self._field_type is None:
            raise ValueError(
                "field_type is chosen from the server version on first use; pass field_type= to build "
                "bodies without a server"
            )
        return self._field_type

    def sparse_search(self, terms: Mapping[str, float], *, field: str, k: int) -> dict[str, Any]:
        if self.field_type() is bodies.FieldType.SPARSE_VECTOR:
            return es_bodies.sparse_vector_search(terms, field=field, k=k)
        return bodies.rank_features_search(terms, field=field, k=k)

    def msearch_lines(self, index: str, clause: Mapping[str, Any], size: int) -> list[dict[str, Any]]:
        return es_bodies.msearch_body(index, [clause], size=size, source=bodies.PAYLOAD_FIELDS)

    def dense_clause(self, vector: npt.NDArray[np.float32], *, k: int, field: str) -> dict[str, Any]:
        return es_bodies.knn_section(vector.tolist(), k=k, field=field)

    def dense_mapping(self, dimension: int) -> tuple[dict[str, Any], dict[str, Any]]:
        return es_bodies.dense_vector_mapping(dimension), {}

    def dense_field_problem(self, have: Mapping[str, Any] | None, dimension: int) -> str | None:
        size = {k: v for k, v in (have or {}).items() if k in ("type", "dims")}
        if size != {"type": "dense_vector", "dims": dimension}:
            have_type, have_dims = size.get("type"), size.get("dims")
            return f"type {have_type!r} of {have_dims!r} dims, wanted 'dense_vector' of {dimension}"
        return None

    def require_dense_support(self, backend: LuceneBackend) -> None:
        return None  # dense_vector is core Elasticsearch

    def native_hybrid(
        self, backend: LuceneBackend, legs: Sequence[Sequence[SearchLeg]], fusion: Fusion, k: int
    ) -> list[list[SearchHit]] | None:
        """``rrf`` / ``linear`` (min-max) retrievers with ``licensed=True``; else None (client-side).

        Snapshot-tested only: no Elasticsearch server runs where this was written.
        """
        build = {
            FusionMethod.RRF: es_bodies.rrf_retriever_body,
            FusionMethod.MINMAX: es_bodies.linear_retriever_body,
        }.get(fusion.method)
        if not self.licensed or build is None:
            return None
        if any(len(q) < 2 or any(leg.clause is None for leg in q) for q in legs):
            return None
        results = []
        for query in legs:
            window = max(leg.size for leg in query)
            body = build([leg.clause or {} for leg in query], fusion, size=k, window=window, licensed=True)
            body.update(track_total_hits=False, _source=list(bodies.PAYLOAD_FIELDS))
            answer = self._search(backend, body)
            resort = Fusion(FusionMethod.SUM)  # one leg, weight 1: the same scores, our tie-break
            results.append(fuse([hits_of(answer)], resort, limit=k))
        return results

    @staticmethod
    def _search(backend: LuceneBackend, body: dict[str, Any]) -> dict[str, Any]:
        response = backend._call(
            "hybrid search", lambda: backend.client.search(index=backend.target.index, body=body)
        )
        return dict(getattr(response, "body", response))


class ElasticsearchBackend(LuceneBackend):
    """Write and search SPLADE vectors in an Elasticsearch index (``rank_features`` or ``sparse_vector``).

    Example:
        >>> from sparsebridge.backends.lucene.bodies import FieldType
        >>> backend = ElasticsearchBackend(
        ...     ClusterTarget("docs", url="http://localhost:9200"), field_type=FieldType.SPARSE_VECTOR
        ... )
        >>> backend.index_body()["mappings"]["properties"]["splade"]
        {'type': 'sparse_vector'}
    """

    dialect: ElasticsearchDialect

    def __init__(
        self,
        target: ClusterTarget,
        *,
        field: str = "splade",
        field_type: bodies.FieldType | None = None,
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
        licensed: bool = False,
        client: Elasticsearch | None = None,
    ) -> None:
        """Configure the backend; no I/O happens here.

        Args:
            target: The index and how to connect (basic auth or ``api_key``).
            field: Name of the sparse field.
            field_type: ``rank_features`` or ``sparse_vector``; None chooses from the server version.
            max_query_terms: Query pruning budget (clauses or query tokens).
            refresh: When writes become searchable.
            shards: ``number_of_shards`` for a new index (engine default if None).
            replicas: ``number_of_replicas`` for a new index (engine default if None).
            chunk_items: Items per ``_bulk`` request.
            chunk_bytes: Bytes per ``_bulk`` request.
            retry: Retry budget for transient failures (429, 502-504, connection errors).
            timeout: Seconds per request.
            dense_size: Dimension of a ``dense_vector`` field (cosine); None: no dense leg.
            dense_field: Name of the dense field.
            licensed: The cluster has an Enterprise license: fuse RRF and min-max hybrids
                server-side with the ``rrf`` / ``linear`` retrievers (off by default).
            client: An ``elasticsearch.Elasticsearch`` to use instead of building one.
        """
        super().__init__(
            target,
            field=field,
            max_query_terms=max_query_terms,
            refresh=refresh,
            shards=shards,
            replicas=replicas,
            chunk_items=chunk_items,
            chunk_bytes=chunk_bytes,
            retry=retry,
            timeout=timeout,
            dense_size=dense_size,
            dense_field=dense_field,
            dialect=ElasticsearchDialect(field_type=field_type, licensed=licensed),
            client=client,
        )

    @property
    def licensed(self) -> bool:
        return self.dialect.licensed
