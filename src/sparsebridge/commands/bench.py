"""``sparsebridge bench ingest``: how well the pipeline overlaps encoding and writing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sparsebridge.backends import Backend, Refresh, parse_target
from sparsebridge.commands.common import (
    BATCH_SIZE_HELP,
    Command,
    load_encoder,
    model_options,
    open_target,
    positive_int,
    target_options,
)


def _arguments(parser: argparse.ArgumentParser) -> None:
    model_options(parser)
    target_options(parser)
    parser.add_argument("--docs", type=positive_int, default=100_000, help="pipeline run documents")
    parser.add_argument("--encode-docs", type=positive_int, default=10_000, help="encode-only documents")
    parser.add_argument("--sink-docs", type=positive_int, default=20_000, help="sink-only documents")
    parser.add_argument("--batch-size", type=positive_int, help=BATCH_SIZE_HELP)
    parser.add_argument("--writers", type=positive_int, default=2, help="concurrent writers")
    parser.add_argument("--output", type=Path, help="append the result as one JSON line here")


def _run(args: argparse.Namespace) -> int:
    import time

    from sparsebridge.ingest.bench import bench_ingest

    target = parse_target(args.to)
    if target.name is None:
        raise ValueError(
            "bench ingest needs a target with an index or collection name, e.g. opensearch://HOST/INDEX"
        )
    stamp = time.strftime("%Y%m%d%H%M%S")

    def backend_factory(phase: str) -> Backend:
        options: dict[str, Any] = {"refresh": Refresh.NONE} if target.cluster else {}
        return open_target(args, target.renamed(f"{target.name}-{phase}-{stamp}"), **options)

    result = bench_ingest(
        encoder=load_encoder(args),
        backend_factory=backend_factory,
        target=args.to,
        docs=args.docs,
        encode_docs=args.encode_docs,
        sink_docs=args.sink_docs,
        batch_size=args.batch_size,
        writers=args.writers,
    )
    line = json.dumps({"model": args.model, **result.to_json()})
    print(line)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
    return 0


COMMAND = Command(
    "bench",
    "benchmarks",
    subcommands=(
        Command(
            "ingest",
            "encode-only, sink-only and pipeline rates, overlap efficiency, memory high-water mark",
            _arguments,
            _run,
        ),
    ),
)
