"""The ASGI app: ``/embed_sparse`` (text-embeddings-inference shapes), ``/search``, ``/health``, ``/metrics``.

Every request to ``/embed_sparse`` and ``/search`` is admitted into a bounded queue before its body
is read: when ``max_queue`` requests are already admitted (waiting for the encoder or being
answered), the next one gets 503 with ``Retry-After`` at once, so memory never grows with the load.
Encoding goes through the encoder's asyncio calls, which share forward passes with every other
request (see :mod:`sparsebridge.encoder.coalesce`); searches run in a small thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sparsebridge.encoder import Encoder, Task
from sparsebridge.errors import InputError, SparsebridgeError
from sparsebridge.search import Searcher, SearchMode
from sparsebridge.serve.metrics import CONTENT_TYPE, ServiceMetrics
from sparsebridge.serve.options import ServeOptions
from sparsebridge.serve.protocol import (
    ProtocolError,
    error_body,
    hit_json,
    parse_embed_request,
    parse_search_request,
    sparse_json,
)
from sparsebridge.types import SparseVector

__all__ = ["Service", "create_app"]

logger = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]


def create_app(
    encoder: Encoder,
    *,
    options: ServeOptions | None = None,
    searchers: Sequence[Searcher] = (),
    search_threads: int = 1,
    on_shutdown: Sequence[Callable[[], object]] = (),
) -> Starlette:
    """The service's ASGI app (run it with uvicorn, or any ASGI server).

    Args:
        encoder: Encodes ``/embed_sparse`` inputs (on ``options.task``'s path) and search queries.
        options: Limits, task, API key (default :class:`ServeOptions`).
        searchers: At most one per mode (``sparse``, ``hybrid``, ``bm25``), all over the same
            target; ``/search`` answers 404 without any.
        search_threads: Searches that run at once (embedded stores: 1).
        on_shutdown: Called when the server shuts down, after the last request was answered
            (to close the searchers' backend).

    Example:
        >>> app = create_app(Encoder.load("splade-tiny"))  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8080)  # doctest: +SKIP
    """
    service = Service(encoder, options or ServeOptions(), searchers, search_threads, on_shutdown)
    return Starlette(
        routes=[
            Route("/embed_sparse", service.route("embed_sparse", service.embed_sparse), methods=["POST"]),
            Route("/search", service.route("search", service.search), methods=["POST"]),
            Route("/health", service.route("health", service.health, open_=True), methods=["GET"]),
            Route("/metrics", service.route("metrics", service.metrics_page), methods=["GET"]),
        ],
        lifespan=service.lifespan,
    )


class Service:
    """The state behind the routes: the encoder, the searchers, the admission count, the metrics."""

    def __init__(
        self,
        encoder: Encoder,
        options: ServeOptions,
        searchers: Sequence[Searcher],
        search_threads: int,
        on_shutdown: Sequence[Callable[[], object]] = (),
    ) -> None:
        if not isinstance(encoder, Encoder):
            raise TypeError(f"encoder must be a sparsebridge Encoder, got {type(encoder).__name__}")
        if search_threads <= 0:
            raise ValueError(f"search_threads must be positive, got {search_threads}")
        self.encoder = encoder
        self.options = options
        self.searchers: dict[str, Searcher] = {}
        for searcher in searchers:
            mode = SearchMode(searcher.mode).value
            if mode in self.searchers:
                raise ValueError(f"two searchers for the {mode} mode")
            self.searchers[mode] = searcher
        self.task = Task(options.task)
        self.admitted = 0
        self.metrics = ServiceMetrics(
            queue_depth=lambda: self.admitted, queue_limit=options.max_queue, coalescer=encoder.coalescer
        )
        self._search_pool = ThreadPoolExecutor(search_threads, thread_name_prefix="sparsebridge-search")
        self._api_key = options.api_key.encode() if options.api_key is not None else None
        self._on_shutdown = list(on_shutdown)

    def route(self, name: str, handler: Handler, *, open_: bool = False) -> Handler:
        """``handler`` with the key check (unless ``open_``), admission (for the model's endpoints),
        errors as TEI's error body, and metrics."""
        admits = name in ("embed_sparse", "search")

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            error_type = None
            try:
                if not open_:
                    self._authorize(request)
                response = await (self._admitted(handler, request) if admits else handler(request))
            except ProtocolError as error:
                error_type = error.error_type
                response = JSONResponse(
                    error_body(error.error_type, error.message),
                    status_code=error.status,
                    headers=error.headers,
                )
            except Exception as error:  # answered as 500; the details go to the log, not to the client
                logger.exception("%s failed", name)
                error_type = "backend"
                message = f"{type(error).__name__} while answering; see the service's log"
                response = JSONResponse(error_body(error_type, message), status_code=500)
            self.metrics.observe_request(
                name, response.status_code, time.perf_counter() - started, error_type
            )
            return response

        return endpoint

    def _authorize(self, request: Request) -> None:
        if self._api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # compare_digest takes the same time wherever the strings differ; the key is never echoed
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._api_key):
            raise ProtocolError(
                401,
                "unauthorized",
                "missing or wrong API key",
                {"WWW-Authenticate": 'Bearer realm="sparsebridge"'},
            )

    async def _admitted(self, handler: Handler, request: Request) -> Response:
        if self.admitted >= self.options.max_queue:
            raise ProtocolError(
                503,
                "overloaded",
                f"the service is at its limit of {self.options.max_queue} requests in flight; retry later",
                {"Retry-After": str(self.options.retry_after)},
            )
        self.admitted += 1  # the event loop's thread only: no lock
        try:
            return await handler(request)
        finally:
            self.admitted -= 1

    async def _json(self, request: Request) -> Any:
        """The request's JSON body, read up to ``max_body_bytes`` (413 beyond)."""
        limit = self.options.max_body_bytes
        too_large = ProtocolError(413, "validation", f"the body is larger than {limit} bytes")
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise ProtocolError(400, "validation", "Content-Length is not a number")
            if int(declared) > limit:
                raise too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
        if not body:
            raise ProtocolError(400, "empty", "the body is empty; send a JSON object")
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ProtocolError(400, "validation", f"the body is not valid JSON: {error}") from None

    async def _encode(self, texts: list[str], task: Task) -> list[SparseVector]:
        encode = self.encoder.aencode_queries if task is Task.QUERY else self.encoder.aencode_documents
        try:
            return await encode(texts, top_k=self.options.top_k, min_weight=self.options.min_weight)
        except InputError as error:
            raise ProtocolError(400, "validation", str(error)) from None

    async def embed_sparse(self, request: Request) -> Response:
        embed = parse_embed_request(
            await self._json(request),
            max_inputs=self.options.max_inputs,
            auto_truncate=self.options.auto_truncate,
        )
        if not embed.truncate:
            longest = self.encoder.max_seq_length
            counts = await asyncio.to_thread(self.encoder.token_counts, embed.texts, task=self.task)
            too_long = [n for n, count in enumerate(counts) if count > longest]
            if too_long:
                raise ProtocolError(
                    413,
                    "validation",
                    f"inputs {too_long[:10]} exceed the model's {longest} tokens and truncate is false",
                )
        vectors = await self._encode(embed.texts, self.task)
        return JSONResponse([sparse_json(vector) for vector in vectors])

    async def search(self, request: Request) -> Response:
        if not self.searchers:
            raise ProtocolError(404, "validation", "this service has no search target (start it with --to)")
        query = parse_search_request(
            await self._json(request), modes=self.searchers, max_k=self.options.max_k
        )
        searcher = self.searchers[query.mode]
        if query.filter is not None:
            raise ProtocolError(
                422, "validation", f"the {searcher.backend.name} backend has no metadata filter"
            )
        sparse = None
        if searcher.mode is not SearchMode.BM25:
            sparse = await self._encode([query.query], Task.QUERY)
        search = functools.partial(searcher.search, [query.query], k=query.k, sparse=sparse)
        try:
            [hits] = await asyncio.get_running_loop().run_in_executor(self._search_pool, search)
        except SparsebridgeError as error:
            raise ProtocolError(502, "backend", f"the search target failed: {error}") from None
        return JSONResponse({"hits": [hit_json(hit) for hit in hits]})

    async def health(self, request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "model": self.encoder.model_name,
                "task": self.task.value,
                "search": sorted(self.searchers),
            }
        )

    async def metrics_page(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """When the server shuts down (after its last request): stop the search threads, then run
        the ``on_shutdown`` callbacks."""
        try:
            yield
        finally:
            self._search_pool.shutdown(wait=True)
            for callback in self._on_shutdown:
                callback()
