"""``sparsebridge encode``: a JSONL file into a JSONL file of sparse vectors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparsebridge.commands.common import Command, input_options, load_encoder, model_options, pruning


def _arguments(parser: argparse.ArgumentParser) -> None:
    model_options(parser)
    input_options(parser)
    parser.add_argument("--output", required=True, type=Path, help="where to write the vectors (JSONL)")
    parser.add_argument("--queries", action="store_true", help="use the model's query path")
    parser.add_argument(
        "--allow-empty-vectors",
        action="store_true",
        help="write documents whose vector is empty (default: refuse them, nothing written)",
    )


def _run(args: argparse.Namespace) -> int:
    from sparsebridge.ingest.export import checked_jsonl, export_vectors

    source = checked_jsonl(
        args.input, id_field=args.id_field, text_field=args.text_field, metadata_fields=args.metadata_fields
    )
    summary = export_vectors(
        source,
        args.output,
        load_encoder=lambda: load_encoder(args),
        queries=args.queries,
        pruning=pruning(args),
        batch_size=args.batch_size,
        allow_empty_vectors=args.allow_empty_vectors,
    )
    print(summary, file=sys.stderr)
    return 0


COMMAND = Command("encode", "encode a JSONL file into sparse vectors (JSONL)", _arguments, _run)
