"""What the CLI's commands share: the command record, option groups, loaders, backend options."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsebridge.backends import (
    DEFAULT_TARGET,
    Backend,
    Engine,
    RetryPolicy,
    Target,
    open_backend,
    parse_target,
)
from sparsebridge.errors import BackendError
from sparsebridge.ingest.options import Pruning
from sparsebridge.query import Fusion, FusionMethod

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

BATCH_SIZE_HELP = "documents per batch (default: 16384 per GPU, 256 on a CPU)"


@dataclass(frozen=True)
class Command:
    """One subcommand: ``arguments`` adds its options, ``run`` runs it (or ``subcommands``)."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    run: Callable[[argparse.Namespace], int] | None = None
    subcommands: tuple[Command, ...] = ()


def fail(message: str) -> None:
    """Say what failed, on stderr."""
    print(f"sparsebridge: error: {message}", file=sys.stderr)


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def field_names(text: str) -> tuple[str, ...]:
    return tuple(name for name in text.split(",") if name)


def model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="hub name, local directory, or a bundled test model (splade-tiny)"
    )
    parser.add_argument(
        "--device",
        help="cuda, cpu, cuda:1, ... or several, comma-separated (cuda:0,cuda:1: one model copy on each; "
        "default: cuda when present)",
    )
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the model's custom code")
    parser.add_argument("--top-k", type=positive_int, help="keep at most this many active dimensions")
    parser.add_argument("--min-weight", type=non_negative_float, default=0.0, help="drop weights <= this")


def model_mismatch_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-model-mismatch",
        action="store_true",
        help="use a target that records another model (default: refuse; the scores would be meaningless)",
    )


def input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, type=Path, help="JSONL file, one document per line")
    parser.add_argument("--id-field", default="id", help="field holding the document id (default: id)")
    parser.add_argument("--text-field", default="text", help="field holding the text (default: text)")
    parser.add_argument(
        "--metadata-fields",
        type=field_names,
        help="comma-separated fields kept as metadata (default: every other field; '' for none)",
    )
    parser.add_argument("--batch-size", type=positive_int, help=BATCH_SIZE_HELP)


def target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", default=DEFAULT_TARGET, help=f"target URI (default: {DEFAULT_TARGET})")
    parser.add_argument(
        "--api-key", default=os.environ.get("QDRANT_API_KEY"), help="Qdrant API key (or QDRANT_API_KEY)"
    )
    parser.add_argument(
        "--username",
        default=os.environ.get("SPARSEBRIDGE_USERNAME"),
        help="OpenSearch/Elasticsearch user (or SPARSEBRIDGE_USERNAME)",
    )
    parser.add_argument(
        "--password",
        default=os.environ.get("SPARSEBRIDGE_PASSWORD"),
        help="OpenSearch/Elasticsearch password (or SPARSEBRIDGE_PASSWORD, which keeps it out of ps)",
    )
    parser.add_argument("--ca-certs", help="CA bundle for opensearch+https:// and elasticsearch+https://")
    parser.add_argument("--no-verify-certs", action="store_true", help="do not check TLS certificates")
    parser.add_argument(
        "--es-field-type",
        choices=["rank_features", "sparse_vector"],
        help="Elasticsearch field type (default: sparse_vector from ES 8.15, else rank_features)",
    )
    parser.add_argument(
        "--max-retry-seconds",
        type=non_negative_float,
        default=60.0,
        help="give up on an unreachable or overloaded backend after this long (default 60)",
    )


def hybrid_options(parser: argparse.ArgumentParser) -> None:
    """``--hybrid``, ``--bm25`` and the fusion options of the commands that search."""
    parser.add_argument("--hybrid", action="store_true", help="fuse sparse with dense and/or full-text legs")
    parser.add_argument(
        "--bm25",
        action="store_true",
        help="add a full-text leg (BM25 on Elasticsearch/OpenSearch and on Qdrant Edge shards ingested "
        "with --bm25, ts_rank_cd on PostgreSQL)",
    )
    fusion_options(parser)


def hybrid_searcher(args: argparse.Namespace, backend: Backend, encoder: Any, dense: Any) -> Any:
    """The hybrid :class:`~sparsebridge.search.Searcher` of ``--hybrid``, ``--bm25`` and the fusion
    options."""
    from sparsebridge.search import Searcher, SearchMode

    return Searcher(
        backend,
        encoder,
        mode=SearchMode.HYBRID,
        dense_encoder=dense,
        bm25=args.bm25,
        fusion=fusion(args),
        candidates=args.candidates,
    )


def fusion_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dense-model", help="dense leg: any sentence-transformers model (bundled: minilm)")
    parser.add_argument(
        "--fusion",
        choices=[method.value for method in FusionMethod],
        default="rrf",
        help="how legs are fused (default rrf); see docs/hybrid.md",
    )
    parser.add_argument(
        "--rrf-k", type=int, default=60, help="RRF rank constant, 1-based ranks (default 60, the paper's)"
    )
    parser.add_argument("--weights", help="one weight per leg: sparse,dense,bm25 (those present)")
    parser.add_argument("--candidates", type=positive_int, default=100, help="hits per leg before fusion")


def quiet_transformers(args: argparse.Namespace) -> None:
    if not args.verbose:
        import transformers

        transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def load_encoder(args: argparse.Namespace) -> Any:
    from sparsebridge.encoder import Encoder

    quiet_transformers(args)
    if args.device and "," in args.device:
        devices = [name.strip() for name in args.device.split(",")]
        return Encoder.load(args.model, devices=devices, trust_remote_code=args.trust_remote_code)
    return Encoder.load(args.model, device=args.device, trust_remote_code=args.trust_remote_code)


def load_dense(args: argparse.Namespace) -> Any:
    if not getattr(args, "dense_model", None):
        return None
    from sparsebridge.encoder.dense import DenseEncoder

    quiet_transformers(args)
    device = args.device.split(",")[0] if args.device else None  # the dense model takes the first device
    return DenseEncoder.load(args.dense_model, device=device, trust_remote_code=args.trust_remote_code)


def pruning(args: argparse.Namespace) -> Pruning:
    return Pruning(top_k=args.top_k, min_weight=args.min_weight)


def fusion(args: argparse.Namespace) -> Fusion:
    weights = None
    if args.weights:
        try:
            weights = tuple(float(w) for w in args.weights.split(","))
        except ValueError as e:
            raise ValueError(f"--weights must be numbers separated by commas, got {args.weights!r}") from e
    return Fusion(FusionMethod(args.fusion), k=args.rrf_k, weights=weights)


def backend_options(
    args: argparse.Namespace, target: Target, dense: Any = None, **options: Any
) -> dict[str, Any]:
    """The keyword options of ``open_backend`` for ``target``: retries, connection, credentials, the
    dense slot of ``dense``'s dimension."""
    retry = RetryPolicy(max_total_seconds=max(args.max_retry_seconds, 0.001))
    if dense is not None:
        options["dense_size"] = dense.dimension
    if target.cluster:  # connection options; the Qdrant API key (QDRANT_API_KEY) is never sent elsewhere
        options.update(username=args.username, password=args.password, ca_certs=args.ca_certs)
        options.update(verify_certs=not args.no_verify_certs)
    if args.es_field_type is not None:
        if target.engine is not Engine.ELASTICSEARCH:
            raise ValueError("--es-field-type applies to elasticsearch:// targets only")
        options["field_type"] = args.es_field_type
    api_key = args.api_key if target.engine is Engine.QDRANT else None
    return {"api_key": api_key, "retry": retry, **options}


def searched_target(uri: str) -> Target:
    """The parsed target of a command that only searches it: an embedded store must exist already.

    Raises:
        BackendError: The embedded store's directory is missing (a search never creates storage).
    """
    target = parse_target(uri)
    if target.path is not None and not Path(target.path).is_dir():
        raise BackendError(
            f"collection {target.name!r} does not exist (ingest into it first): "
            f"no storage directory {target.path}",
            backend=target.engine.value,
        )
    return target


def open_target(args: argparse.Namespace, target: Target, dense: Any = None, **options: Any) -> Backend:
    """The backend of ``target``, with the connection options that apply to it."""
    return open_backend(target, **backend_options(args, target, dense, **options))
