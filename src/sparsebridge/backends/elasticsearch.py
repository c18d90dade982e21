"""Elasticsearch indices with a ``rank_features`` or ``sparse_vector`` field, through elasticsearch-py.

The client's major version must equal the server's (elasticsearch-py 9.x talks to Elasticsearch 9
only; it sends ``compatible-with=9`` headers that an 8.x server refuses). On first use the backend
reads ``GET /`` without those headers and refuses a mismatch, or an OpenSearch server, with an
error that says which client to install.

Field types (:class:`~sparsebridge.backends.rank_features.FieldType`):

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

from sparsebridge.backends import rank_features as bodies
from sparsebridge.backends.cluster import (
    ClusterBackend,
    ClusterTarget,
    ErrorInfo,
    Refresh,
    SearchLeg,
    error_info_from_body,
    hits_of,
)
from sparsebridge.backends.retry import RetryPolicy, call_with_retry
from sparsebridge.errors import BackendError, MissingExtraError
from sparsebridge.query import elasticsearch as es_bodies

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from elasticsearch import Elasticsearch

    from sparsebridge.query.fusion import Fusion
    from sparsebridge.types import SearchHit

__all__ = ["ClusterTarget", "ElasticsearchBackend", "Refresh", "check_server_version"]

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


class ElasticsearchBackend(ClusterBackend):
    """Write and search SPLADE vectors in an Elasticsearch index (``rank_features`` or ``sparse_vector``).

    Example:
        >>> from sparsebridge.backends.rank_features import FieldType
        >>> backend = ElasticsearchBackend(
        ...     ClusterTarget("docs", url="http://localhost:9200"), field_type=FieldType.SPARSE_VECTOR
        ... )
        >>> backend.index_body()["mappings"]["properties"]["splade"]
        {'type': 'sparse_vector'}
    """

    name = "elasticsearch"

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
            field_type=None if field_type is None else bodies.FieldType(field_type),
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
            client=client,
        )
        self.licensed = bool(licensed)
        self._requested_field_type = self.field_type
        self._checked = False
        self._lock = threading.Lock()

    def _new_client(self) -> Any:
        target = self.target
        return _elasticsearch().Elasticsearch(
            target.url,
            basic_auth=(target.username, target.password) if target.username is not None else None,
            api_key=target.api_key,
            verify_certs=target.verify_certs,
            ssl_show_warn=target.verify_certs,
            ca_certs=target.ca_certs,
            request_timeout=self.timeout,
            max_retries=0,  # our RetryPolicy is the only retry layer
            retry_on_timeout=False,
            http_compress=True,
        )

    def _error_info(self, error: BaseException) -> ErrorInfo | None:
        elasticsearch = _elasticsearch()
        from elastic_transport import TransportError

        if isinstance(error, elasticsearch.ApiError):
            return error_info_from_body(error.meta.status, error.body, str(error.message))
        if isinstance(error, TransportError):  # connection refused, timeout, TLS: no answer at all
            return ErrorInfo(None, type(error).__name__, str(error))
        return None

    def _prepare(self) -> None:
        """Once: read the server version (without compatibility headers) and check it."""
        if self._checked:
            return
        with self._lock:
            if self._checked:
                return
            response = call_with_retry(
                lambda: self.client.transport.perform_request(
                    "GET", "/", headers={"accept": "application/json"}
                ),
                policy=self.retry,
                is_transient=self._is_transient,
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
            self.field_type = check_server_version(
                response.body,
                client_version=_elasticsearch().__versionstr__,
                field_type=self._requested_field_type,
            )
            self._checked = True

    def _msearch_lines(self, clause: Mapping[str, Any], size: int) -> list[dict[str, Any]]:
        return es_bodies.msearch_body(self.target.index, [clause], size=size, source=bodies.PAYLOAD_FIELDS)

    def _dense_clause(self, vector: npt.NDArray[np.float32], k: int) -> dict[str, Any]:
        return es_bodies.knn_section(vector.tolist(), k=k, field=self.dense_field)

    def _dense_mapping(self) -> tuple[dict[str, Any], dict[str, Any]]:
        assert self.dense_size is not None
        return es_bodies.dense_vector_mapping(self.dense_size), {}

    def _native_hybrid(
        self, legs: Sequence[Sequence[SearchLeg]], fusion: Fusion, k: int
    ) -> list[list[SearchHit]] | None:
        """``rrf`` / ``linear`` (min-max) retrievers with ``licensed=True``; else None (client-side).

        Snapshot-tested only: no Elasticsearch server runs where this was written.
        """
        from sparsebridge.query.fusion import Fusion, FusionMethod, fuse

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
            answer = self._retriever_search(body)
            resort = Fusion(FusionMethod.SUM)  # one leg, weight 1: the same scores, our tie-break
            results.append(fuse([hits_of(answer)], resort, limit=k))
        return results

    def _retriever_search(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self._call("hybrid search", lambda: self.client.search(index=self.target.index, body=body))
        return dict(getattr(response, "body", response))
