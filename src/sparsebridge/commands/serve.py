"""``sparsebridge serve``: the model (and optionally a search target) over HTTP.

Importing this module is cheap (no PyTorch, no Starlette): the CLI imports it for ``--help``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from sparsebridge.commands.common import (
    Command,
    hybrid_options,
    hybrid_searcher,
    load_dense,
    load_encoder,
    model_mismatch_option,
    model_options,
    open_target,
    searched_target,
    target_options,
)
from sparsebridge.serve.options import API_KEY_ENV, ServeOptions, read_api_key

logger = logging.getLogger(__name__)

_DEFAULTS = ServeOptions()


def _arguments(parser: argparse.ArgumentParser) -> None:
    model_options(parser)
    target_options(parser)
    model_mismatch_option(parser)
    hybrid_options(parser)
    parser.set_defaults(to=None)  # no --to: no /search
    for action in parser._actions:  # the shared option's help names the default target of ingest
        if "--to" in action.option_strings:
            action.help = "target URI that POST /search searches (default: none, no /search)"
    server = parser.add_argument_group("service")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    server.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    server.add_argument(
        "--embed",
        choices=["query", "document"],
        default="query",
        help="the model path /embed_sparse encodes with (default query; /search always encodes queries)",
    )
    server.add_argument(
        "--service-api-key-file",
        type=Path,
        help=f"require 'Authorization: Bearer <key>' with the key in this file (or in ${API_KEY_ENV}); "
        "/health stays open",
    )
    server.add_argument(
        "--max-inputs",
        type=int,
        default=_DEFAULTS.max_inputs,
        help="most texts per request (default %(default)s)",
    )
    server.add_argument(
        "--max-body-bytes",
        type=int,
        default=_DEFAULTS.max_body_bytes,
        help="largest request body (default %(default)s)",
    )
    server.add_argument(
        "--max-queue",
        type=int,
        default=_DEFAULTS.max_queue,
        help="most requests in flight; one more gets 503 with Retry-After (default %(default)s)",
    )
    server.add_argument(
        "--no-auto-truncate",
        action="store_true",
        help="answer 413 for texts longer than the model's maximum unless the request says truncate: true",
    )
    server.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        help="on SIGTERM, seconds to finish the requests in flight (default 30)",
    )


def _run(args: argparse.Namespace) -> int:
    """Load the model (and open the target), then serve until SIGTERM or Ctrl-C."""
    from sparsebridge.errors import MissingExtraError

    try:  # the serve extra
        import uvicorn

        from sparsebridge.serve.app import create_app
    except ImportError as e:
        raise MissingExtraError(e.name or "uvicorn", "serve") from e

    options = _options(args)
    dense = load_dense(args)
    if dense is not None and not args.hybrid:
        raise ValueError("--dense-model needs --hybrid")
    if args.to is None and (args.hybrid or args.bm25):
        raise ValueError("--hybrid and --bm25 need a search target (--to)")
    backend, search_threads = _open_search_target(args, dense)
    server: uvicorn.Server | None = None
    try:
        encoder = load_encoder(args)
        searchers = _searchers(args, backend, encoder, dense) if backend is not None else []
        app = create_app(
            encoder,
            options=options,
            searchers=searchers,
            search_threads=search_threads,
            on_shutdown=[backend.close] if backend is not None else [],
        )
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level="info",
            access_log=bool(args.verbose),
            timeout_graceful_shutdown=args.shutdown_timeout,
            # an outer bound on connections, far above the app's own queue (which answers 503 itself)
            limit_concurrency=4 * options.max_queue + 64,
        )
        server = uvicorn.Server(config)
        # On SIGTERM or Ctrl-C uvicorn stops accepting, finishes the requests in flight, shuts the
        # app down (which closes the backend), then raises the signal again: the exit status is
        # the signal's (143 in a shell for SIGTERM), as with uvicorn itself.
        server.run()
    finally:
        if backend is not None and not (server is not None and server.started):  # else the app closed it
            backend.close()
    return 0


def _options(args: argparse.Namespace) -> ServeOptions:
    return ServeOptions(
        task=args.embed,
        top_k=args.top_k,
        min_weight=args.min_weight,
        max_inputs=args.max_inputs,
        max_body_bytes=args.max_body_bytes,
        max_queue=args.max_queue,
        auto_truncate=not args.no_auto_truncate,
        api_key=read_api_key(args.service_api_key_file),
    )


def _open_search_target(args: argparse.Namespace, dense: Any) -> tuple[Any, int]:
    """The backend of ``--to`` (None without it) and how many searches it may run at once."""
    if args.to is None:
        return None, 1
    target = searched_target(args.to)
    backend = open_target(args, target, dense)
    return backend, 4 if target.cluster else 1  # an embedded store answers one search at a time


def _searchers(
    args: argparse.Namespace,
    backend: Any,
    encoder: Any,
    dense: Any,
) -> list[Any]:
    """The sparse searcher, and the hybrid one with ``--hybrid``, after the model identity check."""
    from sparsebridge.backends.model_identity import ModelIdentity, check_model
    from sparsebridge.search import Searcher

    check_model(backend, ModelIdentity.of(encoder), record=False, allow_mismatch=args.allow_model_mismatch)
    searchers = [Searcher(backend, encoder)]
    if args.hybrid:
        searchers.append(hybrid_searcher(args, backend, encoder, dense))
    return searchers


COMMAND = Command(
    "serve",
    "serve the model over HTTP: /embed_sparse (text-embeddings-inference API), /search, /metrics",
    arguments=_arguments,
    run=_run,
)
