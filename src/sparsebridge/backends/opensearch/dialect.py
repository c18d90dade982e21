"""OpenSearch indices with a ``rank_features`` field, through opensearch-py.

The index maps the sparse field as ``rank_features`` (feature names are token ids, see
:mod:`sparsebridge.backends.lucene.bodies`), ``text`` as BM25 text, ``doc_id`` as a keyword and
``metadata`` as stored JSON. Document ``_id`` is the UUIDv5 of the document id (the same ids as in
Qdrant), so rewrites are idempotent. Search sends the exact dot product: ``bool.should`` of
``rank_feature`` clauses with ``linear`` and ``boost`` = query weight, or, with
``query=OpenSearchQuery.NEURAL_SPARSE``, the neural-search plugin's ``neural_sparse`` with raw
``query_tokens`` (the plugin must be installed on the cluster).

Search side: many queries per ``_msearch`` request (sparse, BM25 ``match`` on ``text``, dense);
hybrid queries send all their legs in ``_msearch`` and fuse them client-side with
:mod:`sparsebridge.query.fusion` (the same definitions as every other backend). With
``hybrid=OpenSearchHybrid.NATIVE_IF_AVAILABLE`` the neural-search plugin's ``hybrid`` query and a
search pipeline fuse server-side instead, but only when ``GET _cat/plugins`` lists the plugin and
the fusion has a pipeline; OpenSearch's normalisations differ from ours in details.

Dense leg: a ``knn_vector`` field (``dense_size=``) needs the k-NN plugin. Without it there is no
dense leg on that cluster: ``ensure_schema``, dense searches and hybrid queries with a dense leg
raise a ``BackendError`` that says so (nothing falls back silently).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt

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
from sparsebridge.backends.opensearch import bodies as os_bodies
from sparsebridge.errors import MissingExtraError
from sparsebridge.query.fusion import Fusion, FusionMethod, fuse
from sparsebridge.types import SearchHit

__all__ = ["OpenSearchDialect", "OpenSearchHybrid", "OpenSearchQuery"]

logger = logging.getLogger(__name__)


class OpenSearchQuery(str, Enum):
    """Which query ``search`` sends (both score the exact dot product on a ``rank_features`` field)."""

    RANK_FEATURE = "rank_feature"  # core (mapper-extras): bool.should of linear rank_feature clauses
    NEURAL_SPARSE = "neural_sparse"  # neural-search plugin: raw query_tokens, weights in (0, 64]


class OpenSearchHybrid(str, Enum):
    """Where hybrid queries are fused.

    ``CLIENT`` (default): ``_msearch`` of the legs, then :mod:`sparsebridge.query.fusion`, whose
    definitions are the same on every backend. ``NATIVE_IF_AVAILABLE``: the neural-search plugin's
    ``hybrid`` query through a ``score-ranker-processor`` (unweighted RRF) or
    ``normalization-processor`` (min-max, z-score) search pipeline, when ``GET _cat/plugins`` lists
    the plugin; otherwise, and for fusions without a pipeline, client-side.
    """

    CLIENT = "client"
    NATIVE_IF_AVAILABLE = "native_if_available"


def _opensearchpy() -> Any:
    try:
        import opensearchpy
    except ImportError as e:
        raise MissingExtraError("opensearch-py", "opensearch") from e
    return opensearchpy


class OpenSearchDialect:
    """OpenSearch for :class:`~sparsebridge.backends.lucene.LuceneBackend` (opensearch-py, plugins).

    One instance per backend: it keeps the cluster's plugin list (``GET _cat/plugins``, read once,
    when a dense leg or the native hybrid needs it).
    """

    name = "opensearch"

    def __init__(
        self,
        *,
        query: OpenSearchQuery = OpenSearchQuery.RANK_FEATURE,
        hybrid: OpenSearchHybrid = OpenSearchHybrid.CLIENT,
    ) -> None:
        self.query = OpenSearchQuery(query)
        self.hybrid = OpenSearchHybrid(hybrid)
        self._plugins: frozenset[str] | None = None

    # -- client hooks --------------------------------------------------------------------------

    def new_client(self, target: ClusterTarget, *, timeout: float) -> Any:
        return _opensearchpy().OpenSearch(
            hosts=[target.url],
            http_auth=(target.username, target.password) if target.username is not None else None,
            verify_certs=target.verify_certs,
            ssl_show_warn=target.verify_certs,
            ca_certs=target.ca_certs,
            timeout=timeout,
            max_retries=0,  # our RetryPolicy is the only retry layer
            retry_on_timeout=False,
            http_compress=True,
            pool_maxsize=16,  # concurrent ingest writers share this client (urllib3's default keeps 1)
        )

    def perform(self, client: Any, request: Request) -> Answer:
        exceptions = _opensearchpy().exceptions
        options: dict[str, Any] = {}
        if request.params:
            options["params"] = dict(request.params)
        if request.body is not None:
            options["body"] = request.body
        try:
            body = client.transport.perform_request(request.method, request.path, **options)
        except exceptions.ConnectionError:
            raise
        except exceptions.TransportError as e:  # opensearch-py raises for every HTTP error status
            if not isinstance(e.status_code, int):
                raise
            return Answer(e.status_code, e.info)
        return Answer(200, body)

    def error_info(self, error: BaseException) -> ErrorInfo | None:
        exceptions = _opensearchpy().exceptions
        if isinstance(error, exceptions.ConnectionError):  # includes timeouts; no answer at all
            return ErrorInfo(None, type(error).__name__, str(error))
        if isinstance(error, exceptions.TransportError):
            status = error.status_code if isinstance(error.status_code, int) else None
            return error_info_from_body(status, error.info, str(error.error))
        return None

    # -- exchanges -----------------------------------------------------------------------------

    def open(self) -> Exchange[None]:
        return done(None)  # nothing to find out up front: plugins are read when a feature needs them

    def plugins(self) -> Exchange[frozenset[str]]:
        """The plugins installed on the cluster (``GET _cat/plugins`` components), read once."""
        if self._plugins is None:
            answer = yield Request("GET", "/_cat/plugins", "plugin check", params={"format": "json"})
            rows = answer.body if isinstance(answer.body, list) else []
            self._plugins = frozenset(str(row.get("component", "")) for row in rows)
        return self._plugins

    def dense_support(self) -> Exchange[str | None]:
        plugins = yield from self.plugins()
        if os_bodies.KNN_PLUGIN in plugins:
            return None
        installed = ", ".join(sorted(plugins)) or "none"
        return (
            f"this OpenSearch cluster has no k-NN plugin ({os_bodies.KNN_PLUGIN}; installed plugins: "
            f"{installed}), so it has no dense leg: a knn_vector field cannot be created or searched. "
            "Install the plugin, or leave the dense model out (sparse and BM25 legs work without it)"
        )

    def native_hybrid(
        self, legs: Sequence[Sequence[SearchLeg]], fusion: Fusion, k: int
    ) -> Exchange[list[list[SearchHit]] | None]:
        """The plugin's ``hybrid`` query + search pipeline, when asked for and possible; else None.

        Snapshot-tested only: no neural-search plugin runs where this was written.
        """
        if self.hybrid is not OpenSearchHybrid.NATIVE_IF_AVAILABLE:
            return None
        if not os_bodies.has_search_pipeline(fusion):
            return None
        if any(not 2 <= len(q) <= 5 or any(leg.clause is None for leg in q) for q in legs):
            return None
        plugins = yield from self.plugins()
        if os_bodies.NEURAL_SEARCH_PLUGIN not in plugins:
            logger.debug("%s: no neural-search plugin, fusing client-side", self.name)
            return None
        resort = Fusion(FusionMethod.SUM)  # one leg, weight 1: the same scores, our tie-break
        results = []
        for query in legs:
            pipeline = os_bodies.search_pipeline_body(fusion, legs=len(query))
            name = os_bodies.pipeline_name(pipeline)
            yield Request("PUT", f"/_search/pipeline/{name}", "create search pipeline", body=pipeline)
            size = max(leg.size for leg in query)  # each sub-query's top `candidates` take part
            body = os_bodies.hybrid_body([leg.clause or {} for leg in query], size=size)
            body.update(track_total_hits=False, _source=list(bodies.PAYLOAD_FIELDS))
            answer = yield Search(body, "hybrid search", params={"search_pipeline": name})
            results.append(fuse([hits_of(answer)], resort, limit=k))
        return results

    # -- bodies --------------------------------------------------------------------------------

    def describe(self) -> str:
        return f"OpenSearch; rank_features field, {self.query.value} query"

    def field_type(self) -> bodies.FieldType:
        return bodies.FieldType.RANK_FEATURES

    def sparse_search(self, terms: Mapping[str, float], *, field: str, k: int) -> dict[str, Any]:
        if self.query is OpenSearchQuery.NEURAL_SPARSE:
            return os_bodies.neural_sparse_search(terms, field=field, k=k)
        return bodies.rank_features_search(terms, field=field, k=k)

    def dense_clause(self, vector: npt.NDArray[np.float32], *, k: int, field: str) -> dict[str, Any]:
        return os_bodies.knn_clause(vector.tolist(), k=os_bodies.knn_candidates(k), field=field)

    def dense_mapping(self, dimension: int) -> tuple[dict[str, Any], dict[str, Any]]:
        return os_bodies.knn_vector_mapping(dimension), dict(os_bodies.KNN_SETTINGS)

    def dense_field_problem(self, have: Mapping[str, Any] | None, dimension: int) -> str | None:
        return os_bodies.knn_field_problem(have, dimension)
