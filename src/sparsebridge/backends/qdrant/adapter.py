"""Qdrant through qdrant-client: a server, or its embedded local mode (``qdrant+local://``).

:class:`ClientStore` is the qdrant-client store of the one Qdrant backend (:mod:`.backend`);
:class:`QdrantBackend` builds that backend over it. Calls to a server are retried as
:mod:`sparsebridge.backends.retry` decides. Local mode is not safe for concurrent writers: its
writes run one at a time, with durable, fast commits (:mod:`.local_storage`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from sparsebridge.backends.model_identity import MODEL_KEY
from sparsebridge.backends.qdrant.backend import Qdrant
from sparsebridge.backends.qdrant.bodies import CLIENT, QdrantSchema, WriteGroup, qdrant_client_module
from sparsebridge.backends.qdrant.local_storage import DeferredSync
from sparsebridge.backends.retry import RetryPolicy, call_with_retry, classify_failure, is_retryable
from sparsebridge.backends.targets import Target, parse_target
from sparsebridge.errors import BackendError, SchemaMismatchError

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

__all__ = ["ClientStore", "QdrantBackend", "QdrantTarget", "schema_problems"]

T = TypeVar("T")

_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
_SERVER_PORT = 6333


@dataclass(frozen=True)
class QdrantTarget:
    """Where the collection lives: an embedded storage ``path`` or a server ``url``."""

    collection: str
    path: str | None = None
    url: str | None = None
    api_key: str | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of path (embedded Qdrant) or url (Qdrant server)")
        if not _COLLECTION_NAME.match(self.collection):
            raise ValueError(f"invalid Qdrant collection name {self.collection!r}")
        if self.api_key is not None and self.url is None:
            raise ValueError("an API key only applies to a Qdrant server (url)")

    def location(self) -> Target:
        """The target URI this names, parsed (``qdrant+local://PATH/C``, ``qdrant[+https]://HOST:PORT/C``)."""
        if self.path is not None:
            return parse_target(f"qdrant+local://{self.path}/{self.collection}")
        assert self.url is not None
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"a Qdrant server url is http(s)://HOST[:PORT], got {self.url!r}")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        scheme = "qdrant+https" if parts.scheme == "https" else "qdrant"
        return parse_target(f"{scheme}://{host}:{parts.port or _SERVER_PORT}/{self.collection}")


def _is_transient(error: BaseException) -> bool:
    """Retry what :func:`~sparsebridge.backends.retry.classify_failure` retries, and no answer at all."""
    exceptions = qdrant_client_module().http.exceptions
    if isinstance(error, exceptions.UnexpectedResponse):
        return is_retryable(classify_failure(error.status_code))
    return isinstance(error, (exceptions.ResponseHandlingException, ConnectionError, TimeoutError))


def _is_missing(error: BackendError | ValueError) -> bool:
    """A missing collection: a server answers 404, local mode raises ValueError."""
    return error.status == 404 if isinstance(error, BackendError) else "not found" in str(error)


def schema_problems(params: Any, schema: QdrantSchema) -> list[str]:
    """How an existing collection's ``params`` differ from ``schema`` (empty: they match)."""
    models = qdrant_client_module().models
    problems = []
    sparse = params.sparse_vectors or {}
    if schema.vector_name not in sparse:
        problems.append(f"no sparse vector named {schema.vector_name!r} (has {sorted(sparse)})")
    else:
        has_idf = sparse[schema.vector_name].modifier == models.Modifier.IDF
        if has_idf != schema.idf:
            problems.append(
                f"IDF modifier is {'on' if has_idf else 'off'}, wanted {'on' if schema.idf else 'off'}"
            )
    if schema.dense_size is not None:
        dense = params.vectors if isinstance(params.vectors, dict) else {}
        if schema.dense_name not in dense:
            problems.append(f"no dense vector named {schema.dense_name!r}")
        elif dense[schema.dense_name].size != schema.dense_size:
            problems.append(
                f"dense vector {schema.dense_name!r} has size {dense[schema.dense_name].size}, "
                f"wanted {schema.dense_size}"
            )
    return problems


class ClientStore:
    """A collection behind qdrant-client; the client is made on first use.

    Writes wait until Qdrant applied them (``wait=True``). Qdrant does not say which points a
    write's condition skipped, so :meth:`upsert` counts none as stale.
    """

    name = "qdrant"
    dialect = CLIENT
    text_field: str | None = None  # no BM25 leg

    def __init__(
        self,
        target: QdrantTarget,
        schema: QdrantSchema,
        *,
        retry: RetryPolicy,
        client: QdrantClient | None = None,
    ) -> None:
        self.target = target
        self.schema = schema
        self.retry = retry
        self.location = target.location()
        self.opened: QdrantClient | None = client
        self._local_writes = threading.Lock()  # embedded Qdrant is not safe for concurrent writers
        self._durable = DeferredSync()

    @property
    def client(self) -> QdrantClient:
        """The qdrant-client client (made on first use)."""
        if self.opened is None:
            qdrant_client = qdrant_client_module()
            if self.target.path is not None:
                self.opened = qdrant_client.QdrantClient(path=self.target.path)
            else:
                self.opened = qdrant_client.QdrantClient(
                    url=self.target.url, api_key=self.target.api_key, timeout=30
                )
        return self.opened

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        UnexpectedResponse = qdrant_client_module().http.exceptions.UnexpectedResponse
        try:
            return call_with_retry(
                lambda: fn(*args, **kwargs),
                policy=self.retry,
                is_transient=_is_transient,
                backend=self.name,
                what=what,
            )
        except UnexpectedResponse as e:
            raise BackendError(
                f"{what} failed: {e.status_code} {e.content!r}", backend=self.name, status=e.status_code
            ) from e

    def ensure_schema(self) -> None:
        models = qdrant_client_module().models
        collection, schema = self.target.collection, self.schema
        if not self._call("collection check", self.client.collection_exists, collection):
            dense = {}
            if schema.dense_size:
                params = models.VectorParams(size=schema.dense_size, distance=models.Distance.COSINE)
                dense = {schema.dense_name: params}
            modifier = models.Modifier.IDF if schema.idf else models.Modifier.NONE
            self._call(
                "create collection",
                self.client.create_collection,
                collection,
                vectors_config=dense,
                sparse_vectors_config={schema.vector_name: models.SparseVectorParams(modifier=modifier)},
            )
            return
        params = self._call("get collection", self.client.get_collection, collection).config.params
        problems = schema_problems(params, schema)
        if problems:
            raise SchemaMismatchError(
                f"collection {collection!r} exists with another schema: " + "; ".join(problems),
                backend=self.name,
            )

    def _change(self, change: Callable[[], object]) -> None:
        """Run a write or delete: in local mode one at a time and on disk when it returns."""
        if self.target.path is None:
            change()
            return
        with self._local_writes:
            self._durable.run(self.client, self.target.collection, change)

    def upsert(self, groups: Sequence[WriteGroup]) -> int:
        def change() -> None:
            for group in groups:
                self._call(
                    "upsert",
                    self.client.upsert,
                    self.target.collection,
                    points=group.points,
                    wait=True,
                    update_filter=group.condition,
                )

        self._change(change)
        return 0

    def delete(self, ids: Sequence[str]) -> None:
        selector = qdrant_client_module().models.PointIdsList(points=list(ids))
        self._change(
            lambda: self._call(
                "delete", self.client.delete, self.target.collection, points_selector=selector, wait=True
            )
        )

    def query(self, what: str, requests: Sequence[Any]) -> list[list[Any]]:
        try:
            responses = self._call(what, self.client.query_batch_points, self.target.collection, requests)
        except (BackendError, ValueError) as e:
            if not _is_missing(e):
                raise
            raise BackendError(
                f"collection {self.target.collection!r} does not exist (ingest into it first)",
                backend=self.name,
                status=404,
            ) from e
        return [response.points for response in responses]

    def count(self) -> int:
        return int(self._call("count", self.client.count, self.target.collection, exact=True).count)

    def stored_model(self) -> dict[str, Any] | None:
        try:
            info = self._call("get collection", self.client.get_collection, self.target.collection)
        except (BackendError, ValueError) as e:
            if _is_missing(e):
                return None
            raise
        found = (info.config.metadata or {}).get(MODEL_KEY)
        return dict(found) if isinstance(found, dict) else None

    def store_model(self, identity: Mapping[str, Any]) -> None:
        """Record the model identity in the collection's metadata (other metadata keys are kept)."""
        metadata = {MODEL_KEY: dict(identity)}
        self._call(
            "record the model", self.client.update_collection, self.target.collection, metadata=metadata
        )

    def close(self) -> None:
        if self.opened is not None:
            self.opened.close()
            self.opened = None


class QdrantBackend(Qdrant[ClientStore]):
    """Write and search SPLADE vectors in a Qdrant collection, through qdrant-client.

    Constructing it does no I/O; the client is made on first use (:attr:`client`).

    Example:
        >>> backend = QdrantBackend(QdrantTarget("docs", path="./qdrant-data"))
        >>> backend.location.uri
        'qdrant+local://./qdrant-data/docs'
        >>> backend.ensure_schema()  # doctest: +SKIP
    """

    def __init__(
        self,
        target: QdrantTarget,
        *,
        vector_name: str = "splade",
        idf: bool = False,
        dense_size: int | None = None,
        dense_name: str = "dense",
        batch_size: int = 256,
        retry: RetryPolicy | None = None,
        client: QdrantClient | None = None,
    ) -> None:
        schema = QdrantSchema(vector_name, idf, dense_size, dense_name)
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        store = ClientStore(target, schema, retry=retry or RetryPolicy(), client=client)
        super().__init__(store, schema, batch_size=batch_size)
        self.target = target
        self.batch_size = batch_size
        self.retry = store.retry

    @property
    def client(self) -> QdrantClient:
        """The qdrant-client client (made on first use), e.g. for a framework's own Qdrant store."""
        return self._live().client
