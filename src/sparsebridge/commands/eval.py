"""``sparsebridge eval``: a model measured on BEIR-format data through a backend and exactly."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sparsebridge.backends import Engine, parse_target
from sparsebridge.commands.common import (
    Command,
    fusion,
    fusion_options,
    load_dense,
    load_encoder,
    model_options,
    open_target,
    positive_int,
    target_options,
)


def _arguments(parser: argparse.ArgumentParser) -> None:
    model_options(parser)
    target_options(parser)
    dataset = parser.add_mutually_exclusive_group(required=True)
    dataset.add_argument(
        "--dataset", help="BEIR dataset directory, or nanobeir/NAME: a NanoBEIR set (hub, then cached)"
    )
    dataset.add_argument(
        "--all-nanobeir", action="store_true", help="every NanoBEIR set in turn: a per-set table and the mean"
    )
    parser.add_argument(
        "--nanobeir-repository",
        help="dataset holding the NanoBEIR sets (default: sentence-transformers/NanoBEIR-en)",
    )
    parser.add_argument("--split", default="test", help="qrels split: qrels/SPLIT.tsv (default: test)")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="documents per ingest batch")
    fusion_options(parser)


def _run(args: argparse.Namespace) -> int:
    from sparsebridge.eval import run_eval
    from sparsebridge.eval.nanobeir import NANOBEIR, load_dataset_argument, nanobeir_mean, nanobeir_table

    names = [f"nanobeir/{name}" for name in NANOBEIR] if args.all_nanobeir else [args.dataset]
    repository = args.nanobeir_repository
    datasets = {name: load_dataset_argument(name, split=args.split, repository=repository) for name in names}
    legs = fusion(args)
    dense = load_dense(args)
    target = parse_target(args.to)
    encoder = None
    reports = {}
    for name, dataset in datasets.items():
        short = name.split("/")[-1]
        # every set gets its own collection or index: a target must hold one corpus only
        where = target.renamed(f"{target.name}-{short}") if len(names) > 1 and target.name else target
        bm25 = {"bm25": True} if where.engine is Engine.QDRANT_EDGE else {}  # measure its BM25 leg too
        with open_target(args, where, dense, **bm25) as backend:
            encoder = encoder or load_encoder(args)
            reports[short] = run_eval(
                dataset,
                encoder=encoder,
                backend=backend,
                dense_encoder=dense,
                fusion=legs,
                candidates=args.candidates,
                batch_size=args.batch_size,
                top_k=args.top_k,
            )
    if len(reports) == 1:
        [report] = reports.values()
        print(report.table())
        output: dict[str, Any] = report.to_json()
    else:
        print(nanobeir_table(reports))
        output = {"datasets": {n: r.to_json() for n, r in reports.items()}, "mean": nanobeir_mean(reports)}
    if args.output is not None:
        args.output.write_text(json.dumps(output, indent=2) + "\n", encoding="utf-8")
    return 0


COMMAND = Command("eval", "evaluate a model on a BEIR-format dataset through a backend", _arguments, _run)
