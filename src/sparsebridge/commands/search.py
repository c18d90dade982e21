"""``sparsebridge search``: one text query, sparse or hybrid, through a backend."""

from __future__ import annotations

import argparse

from sparsebridge.backends.model_identity import ModelIdentity, check_model
from sparsebridge.commands.common import (
    Command,
    hybrid_options,
    hybrid_searcher,
    load_dense,
    load_encoder,
    model_mismatch_option,
    model_options,
    open_target,
    positive_int,
    searched_target,
    target_options,
)
from sparsebridge.errors import InputError


def _arguments(parser: argparse.ArgumentParser) -> None:
    model_options(parser)
    target_options(parser)
    parser.add_argument("query", help="the query text")
    parser.add_argument("-k", type=positive_int, default=10, help="number of results (default 10)")
    model_mismatch_option(parser)
    hybrid_options(parser)


def _run(args: argparse.Namespace) -> int:
    from sparsebridge.search import Searcher

    if not args.query.strip():
        raise InputError("the query is empty")
    dense = load_dense(args)
    if dense is not None and not args.hybrid:
        raise ValueError("--dense-model needs --hybrid")
    target = searched_target(args.to)
    with open_target(args, target, dense) as backend:
        encoder = load_encoder(args)
        check_model(
            backend, ModelIdentity.of(encoder), record=False, allow_mismatch=args.allow_model_mismatch
        )
        searcher = (
            hybrid_searcher(args, backend, encoder, dense) if args.hybrid else Searcher(backend, encoder)
        )
        query = encoder.encode_queries([args.query], top_k=args.top_k, min_weight=args.min_weight)
        [hits] = searcher.search([args.query], k=args.k, sparse=query)
    if not hits:
        print("no results")
    for rank, hit in enumerate(hits, start=1):
        snippet = " ".join(str(hit.payload.get("text", "")).split())
        snippet = snippet if len(snippet) <= 80 else snippet[:77] + "..."
        print(f"{rank:>3}  {hit.score:9.4f}  {hit.id}  {snippet}")
    return 0


COMMAND = Command("search", "search a backend with a text query", _arguments, _run)
