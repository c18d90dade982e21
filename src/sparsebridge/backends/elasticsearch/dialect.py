"""Elasticsearch indices with a ``sparse_vector`` or ``rank_features`` field, through elasticsearch-py.

The client's major version must equal the server's (elasticsearch-py 8.x talks to Elasticsearch 8
only, 9.x to 9 only; no elasticsearch-py talks to OpenSearch). When the backend first talks to the
node it reads the server version without the client's compatibility headers (``GET /``, or the
node info where a node refuses ``GET /``) and refuses a mismatch, or an OpenSearch server, with an
error that says which client to install.

Then it finds out which exact sparse query the node offers (:class:`SparseQuery`), by asking the
node to parse each candidate in a search on no index, and keeps the first that parses:

- Elasticsearch >= 8.15: the ``sparse_vector`` query with ``"prune": false`` (indices created on
  8.19/9.1+ prune query tokens by default, which is not exact), then ``weighted_tokens``
  (8.13+, no pruning config), then ``rank_feature`` on a ``rank_features`` field;
- before 8.15: ``rank_feature`` on ``rank_features`` (7.12+, ``linear`` function), then
  ``weighted_tokens``.

``field_type=`` limits the candidates to one field type; ``sparse_query=`` names the query and
skips the check. :meth:`~sparsebridge.backends.lucene.LuceneBackend.describe` says what was chosen;
when none parses, the error names each candidate and what registers it. Feature names, weights,
ids and payload are as for OpenSearch.

Search side: many queries per ``_msearch`` request (sparse, BM25 ``match`` on ``text``, dense
``knn`` on a ``dense_vector`` field with ``dense_size=``). Hybrid queries send all their legs in
``_msearch`` and fuse them client-side with :mod:`sparsebridge.query.fusion`; with
``licensed=True`` (the ``rrf`` and ``linear`` retrievers need an Enterprise license) RRF and
min-max fuse server-side instead, where Elasticsearch's definition equals ours.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import numpy as np
import numpy.typing as npt

from sparsebridge.backends.elasticsearch import bodies as es_bodies
from sparsebridge.backends.elasticsearch.bodies import SparseQuery
from sparsebridge.backends.lucene import bodies
from sparsebridge.backends.lucene.dialect import (
    Answer,
    ErrorInfo,
    Exchange,
    Request,
    Search,
    SearchLeg,
    done,
    error_info_from_body,
    hits_of,
)
from sparsebridge.backends.lucene.target import ClusterTarget
from sparsebridge.errors import BackendError, MissingExtraError
from sparsebridge.query.fusion import Fusion, FusionMethod, fuse
from sparsebridge.types import SearchHit

__all__ = ["ElasticsearchDialect", "check_server_version", "client_pairing_hint", "sparse_query_candidates"]


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


def client_pairing_hint(client_version: str) -> str:
    """What to install so that the client's major equals the server's (said by every pairing error)."""
    major = _version(client_version)[0]
    return (
        f"elasticsearch-py {client_version} talks to Elasticsearch {major}.x only (and to no OpenSearch): "
        "install the elasticsearch-py whose major version equals the server's, e.g. "
        "pip install 'elasticsearch>=8,<9' for an 8.x server"
    )


def check_server_version(info: Any, *, client_version: str) -> tuple[int, int]:
    """Check a server's version answer (``GET /`` body) against the client's; return (major, minor).

    Args:
        info: ``{"version": {"number": ..., "distribution": ...}}`` as ``GET /`` answers.
        client_version: The installed elasticsearch-py version (``"9.5.1"``).

    Raises:
        BackendError: The server is not Elasticsearch, or its major differs from the client's.
    """
    version = info.get("version", {}) if isinstance(info, Mapping) else {}
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
    return server


def sparse_query_candidates(
    server: tuple[int, int], field_type: bodies.FieldType | None
) -> list[SparseQuery]:
    """The exact sparse queries to try on a server of version ``server``, best first.

    From 8.15 on the ``sparse_vector`` query leads; before, ``rank_features`` does (as it is
    queried on every version since 7.12). ``field_type`` keeps only the queries of that field type.

    Example:
        >>> [q.value for q in sparse_query_candidates((8, 19), None)]
        ['sparse_vector', 'weighted_tokens', 'rank_feature']
        >>> [q.value for q in sparse_query_candidates((8, 14), None)]
        ['rank_feature', 'weighted_tokens']
    """
    if server >= SparseQuery.SPARSE_VECTOR.since:
        order = [SparseQuery.SPARSE_VECTOR, SparseQuery.WEIGHTED_TOKENS, SparseQuery.RANK_FEATURE]
    else:
        order = [SparseQuery.RANK_FEATURE, SparseQuery.WEIGHTED_TOKENS]
    return [q for q in order if server >= q.since and (field_type is None or q.field_type is field_type)]


class ElasticsearchDialect:
    """Elasticsearch for :class:`~sparsebridge.backends.lucene.LuceneBackend` (elasticsearch-py).

    One instance per backend: its :meth:`open` exchange reads the server version once (without
    the client's compatibility headers), refuses a mismatch, and picks the exact sparse query the
    node offers (see the module docstring).
    """

    name = "elasticsearch"

    def __init__(
        self,
        *,
        field_type: bodies.FieldType | None = None,
        sparse_query: SparseQuery | None = None,
        licensed: bool = False,
    ) -> None:
        self.requested_field_type = None if field_type is None else bodies.FieldType(field_type)
        self.requested_query = None if sparse_query is None else SparseQuery(sparse_query)
        if (
            self.requested_query is not None
            and self.requested_field_type is not None
            and self.requested_query.field_type is not self.requested_field_type
        ):
            raise ValueError(
                f"the {self.requested_query.value} query reads a {self.requested_query.field_type.value} "
                f"field, not {self.requested_field_type.value}"
            )
        self.licensed = bool(licensed)
        self.sparse_query: SparseQuery | None = self.requested_query
        self.server_version: str | None = None

    # -- client hooks --------------------------------------------------------------------------

    def new_client(self, target: ClusterTarget, *, timeout: float) -> Any:
        return _elasticsearch().Elasticsearch(
            target.url,
            basic_auth=(target.username, target.password) if target.username is not None else None,
            api_key=target.api_key,
            verify_certs=target.verify_certs,
            ssl_show_warn=target.verify_certs,
            ca_certs=target.ca_certs,
            request_timeout=timeout,
            max_retries=0,  # our RetryPolicy is the only retry layer
            retry_on_timeout=False,
            http_compress=True,
        )

    def perform(self, client: Any, request: Request) -> Answer:
        """One request through the client's transport: plain JSON, without compatibility headers."""
        path = request.path + (f"?{urlencode(dict(request.params))}" if request.params else "")
        headers = client._headers.copy()  # the client's own: its Authorization (basic auth, API key)
        headers["accept"] = "application/json"  # plain JSON: no compatible-with header
        if request.body is not None:
            headers["content-type"] = "application/json"
        else:
            headers.pop("content-type", None)
        response = client.transport.perform_request(request.method, path, headers=headers, body=request.body)
        return Answer(int(response.meta.status), response.body)

    def error_info(self, error: BaseException) -> ErrorInfo | None:
        elasticsearch = _elasticsearch()
        from elastic_transport import TransportError  # installed with the elasticsearch extra

        hint = client_pairing_hint(elasticsearch.__versionstr__)
        if isinstance(error, elasticsearch.UnsupportedProductError):  # not retried: the server is wrong
            return ErrorInfo(error.meta.status, "unsupported_product", f"{error.message}: {hint}")
        if isinstance(error, elasticsearch.ApiError):
            info = error_info_from_body(error.meta.status, error.body, str(error.message))
            if info.type == "media_type_header_exception":  # a 9.x client's headers on an 8.x server
                return ErrorInfo(info.status, info.type, f"{info.reason}: {hint}")
            return info
        if isinstance(error, TransportError):  # connection refused, timeout, TLS: no answer at all
            return ErrorInfo(None, type(error).__name__, str(error))
        return None

    # -- exchanges -----------------------------------------------------------------------------

    def open(self) -> Exchange[None]:
        """Read and check the server version, then pick the exact sparse query the node offers."""
        number = yield from self._server_version()
        server = check_server_version(
            {"version": {"number": number}}, client_version=_elasticsearch().__versionstr__
        )
        self.server_version = number
        if self.requested_query is not None:
            if server < self.requested_query.since:
                raise self._too_old(self.requested_query, number)
            return
        candidates = sparse_query_candidates(server, self.requested_field_type)
        if not candidates:
            wanted = self.requested_field_type or bodies.FieldType.RANK_FEATURES
            since = min(q.since for q in SparseQuery if q.field_type is wanted)
            raise BackendError(
                f"{wanted.value} with exact scoring needs Elasticsearch >= {since[0]}.{since[1]}; the "
                f"server is {number}",
                backend=self.name,
            )
        refused = []
        for query in candidates:
            answer = yield Request(
                "POST",
                f"/{es_bodies.PROBE_INDEX}/_search",
                "sparse query check",
                params={"allow_no_indices": "true", "ignore_unavailable": "true"},
                body=es_bodies.probe_body(query),
                accept=frozenset({400}),
            )
            if answer.ok:
                self.sparse_query = query
                return
            info = error_info_from_body(answer.status, answer.body, "")
            refused.append(f"{query.value} ({query.provider}): {info.type}: {info.reason}")
        raise BackendError(
            f"Elasticsearch {number} at this address offers no exact sparse query; it refused "
            + "; ".join(refused)
            + ". Use a node with one of them (a default distribution has all three)",
            backend=self.name,
        )

    def _server_version(self) -> Exchange[str]:
        """The server's version number: ``GET /``, or the local node's info where ``GET /`` is refused."""
        root = yield Request("GET", "/", "version check", accept=frozenset({403, 404, 405}))
        if root.ok:
            version = root.body.get("version", {}) if isinstance(root.body, Mapping) else {}
            if version.get("distribution") == "opensearch":
                check_server_version(root.body, client_version=_elasticsearch().__versionstr__)
            return str(version.get("number", "?"))
        nodes = yield Request(
            "GET", "/_nodes/_local", "version check", params={"filter_path": "nodes.*.version"}
        )
        found = nodes.body.get("nodes", {}) if isinstance(nodes.body, Mapping) else {}
        versions = [str(node.get("version", "?")) for node in found.values() if isinstance(node, Mapping)]
        if not versions:
            raise BackendError(
                f"the server did not report an Elasticsearch version (GET / answered {root.status}; "
                f"the node info: {nodes.body!r})",
                backend=self.name,
            )
        return versions[0]

    def _too_old(self, query: SparseQuery, number: str) -> BackendError:
        return BackendError(
            f"the {query.value} query needs Elasticsearch >= {query.since[0]}.{query.since[1]}; the "
            f"server is {number}",
            backend=self.name,
        )

    def dense_support(self) -> Exchange[str | None]:
        return done(None)  # dense_vector is core Elasticsearch

    def native_hybrid(
        self, legs: Sequence[Sequence[SearchLeg]], fusion: Fusion, k: int
    ) -> Exchange[list[list[SearchHit]] | None]:
        """``rrf`` / ``linear`` (min-max) retrievers with ``licensed=True``; else None (client-side).

        Snapshot-tested only: no licensed Elasticsearch runs where this was written.
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
        resort = Fusion(FusionMethod.SUM)  # one leg, weight 1: the same scores, our tie-break
        for query in legs:
            window = max(leg.size for leg in query)
            body = build([leg.clause or {} for leg in query], fusion, size=k, window=window, licensed=True)
            body.update(track_total_hits=False, _source=list(bodies.PAYLOAD_FIELDS))
            answer = yield Search(body, "hybrid search")
            results.append(fuse([hits_of(answer)], resort, limit=k))
        return results

    # -- bodies --------------------------------------------------------------------------------

    def _query(self) -> SparseQuery:
        """The query chosen; before the node was asked, the first one of the requested field type."""
        if self.sparse_query is not None:
            return self.sparse_query
        if self.requested_field_type is bodies.FieldType.RANK_FEATURES:
            return SparseQuery.RANK_FEATURE
        if self.requested_field_type is bodies.FieldType.SPARSE_VECTOR:
            return SparseQuery.SPARSE_VECTOR
        raise ValueError(
            "the sparse query is chosen from what the node offers, on first use; pass "
            "sparse_query= (or field_type=rank_features) to build bodies without a server"
        )

    def describe(self) -> str:
        query = self._query()
        prune = " with prune: false" if query is SparseQuery.SPARSE_VECTOR else ""
        return (
            f"Elasticsearch {self.server_version or '(version not read)'}; {query.field_type.value} field, "
            f"{query.value} query{prune}"
        )

    def field_type(self) -> bodies.FieldType:
        return self._query().field_type

    def sparse_search(self, terms: Mapping[str, float], *, field: str, k: int) -> dict[str, Any]:
        return es_bodies.sparse_search(self._query(), terms, field=field, k=k)

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
