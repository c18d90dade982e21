"""``sparsebridge ingest``: one resumable run into a backend, on this process's threads or on Ray."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sparsebridge.backends import Refresh, Target, parse_target
from sparsebridge.commands.common import (
    EXIT_INTERRUPTED,
    Command,
    backend_options,
    fail,
    input_options,
    load_dense,
    load_encoder,
    model_mismatch_option,
    model_options,
    non_negative_float,
    open_target,
    positive_int,
    pruning,
    target_options,
)
from sparsebridge.errors import InputError
from sparsebridge.ingest.options import PipelineOptions, RunOptions
from sparsebridge.ingest.run import IngestStats, Optimized, optimize_target, run_dir_for


def _arguments(parser: argparse.ArgumentParser) -> None:
    model_options(parser)
    input_options(parser)
    target_options(parser)
    add = parser.add_argument
    add("--idf", action="store_true", help="Qdrant: create the collection with the IDF modifier")
    add(
        "--bm25",
        action="store_true",
        help="Qdrant Edge: index the text for the BM25 leg of search --bm25 (OpenSearch, Elasticsearch "
        "and PostgreSQL always index it)",
    )
    add("--no-progress", action="store_true", help="hide the progress bar")
    add(
        "--no-optimize",
        action="store_true",
        help="Qdrant Edge: do not optimize the shard's segments when the run completes (every later "
        "open then rebuilds them in memory)",
    )
    add(
        "--run-dir",
        type=Path,
        help="checkpoint and dead-letter file (default: .sparsebridge/runs/<input>-<hash of input, target>)",
    )
    add("--resume", action="store_true", help="continue the run checkpointed in the run dir")
    add("--run-number", type=positive_int, help="version of every write (default: time in ms, monotonic)")
    add("--writers", type=positive_int, default=2, help="concurrent writers (default 2)")
    add(
        "--short-gil-switches",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="lower this process's GIL switch interval to 0.5 ms while ingesting, so that the encoder "
        "takes the GIL back quickly from the writers (default on)",
    )
    add(
        "--max-dead-letter-fraction",
        type=non_negative_float,
        default=0.01,
        help="stop when more than this fraction of items is dead-lettered (default 0.01)",
    )
    add("--stats-json", type=Path, help="write the final stats as JSON here")
    add("--dense-model", help="also store a dense embedding (a sentence-transformers model)")
    model_mismatch_option(parser)
    add(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process (threads); ray: a Ray cluster (the [ray] extra)",
    )
    add("--ray-address", help="Ray: the cluster to join (default: RAY_ADDRESS, else a local one)")
    add("--actors", type=positive_int, default=1, help="Ray: encoder actors (default 1)")
    add(
        "--gpus-per-actor",
        type=non_negative_float,
        default=0.0,
        help="Ray: GPUs per encoder actor (default 0: CPU; a fraction shares a GPU)",
    )
    add(
        "--cpus-per-actor",
        type=non_negative_float,
        default=1.0,
        help="Ray: CPUs per encoder actor, its torch threads on a CPU (default 1)",
    )


def _run(args: argparse.Namespace) -> int:
    """One run (which locks its run dir); ``--stats-json`` is written whether it succeeds or not."""
    live: list[IngestStats] = []  # the run's live stats, once it started
    try:
        target = parse_target(args.to)
        run_dir = args.run_dir or run_dir_for(args.input, target.uri)
        if args.max_dead_letter_fraction > 1:
            raise ValueError("--max-dead-letter-fraction must be at most 1")
        if not args.input.exists():
            raise InputError("input file does not exist", source=str(args.input))
        run = RunOptions(
            run_dir=run_dir,
            resume=args.resume,
            run_number=args.run_number,
            max_dead_letter_fraction=args.max_dead_letter_fraction,
            allow_model_mismatch=args.allow_model_mismatch,
        )
        # an acknowledged bulk is durable (translog) before it is searchable: no refresh per request
        options: dict[str, Any] = {"idf": args.idf, **({"refresh": Refresh.NONE} if target.cluster else {})}
        if args.bm25:  # open_backend refuses it for targets other than Qdrant Edge
            options["bm25"] = True
        ingest_on = _ingest_on_ray if args.engine == "ray" else _ingest_here
        stats, optimized = ingest_on(args, run, target, options, live)
    except BaseException as e:
        _write_stats(args, live[0].to_json() if live else {}, error=e)
        raise
    if optimized is not None:
        print(optimized.summary(), file=sys.stderr)
    _write_stats(args, stats.to_json(), error=None)
    print(f"run {stats.run_number}: {stats.summary()}", file=sys.stderr)
    if stats.dead_lettered:
        print(f"dead-lettered items are listed in {run_dir / 'dead_letter.jsonl'}", file=sys.stderr)
    if stats.interrupted:
        fail(f"interrupted after {stats.position} items; continue with --resume (run dir {run_dir})")
        return EXIT_INTERRUPTED
    print(f"wrote {stats.written} documents to {target.uri}")
    return 0


def _write_stats(args: argparse.Namespace, stats: dict[str, Any], error: BaseException | None) -> None:
    if args.stats_json is None:
        return
    failed = None if error is None else str(error) or type(error).__name__
    text = json.dumps({**stats, "error": failed}, indent=2) + "\n"
    try:
        args.stats_json.write_text(text, encoding="utf-8")
    except OSError as e:
        if error is None:
            raise
        fail(f"{args.stats_json}: {e.strerror}")  # the run's own error is the one to report


_Ran = tuple[IngestStats, Optimized | None]


def _ingest_here(
    args: argparse.Namespace,
    run: RunOptions,
    target: Target,
    options: dict[str, Any],
    live: list[IngestStats],
) -> _Ran:
    from tqdm import tqdm

    from sparsebridge.ingest import ingest, open_source

    source = open_source(
        args.input, id_field=args.id_field, text_field=args.text_field, metadata_fields=args.metadata_fields
    )
    dense = load_dense(args)
    layout = PipelineOptions(
        batch_size=args.batch_size,
        writers=args.writers,
        handle_signals=True,
        short_gil_switches=args.short_gil_switches,
    )
    with open_target(args, target, dense, **options) as backend:
        encoder = load_encoder(args)
        with tqdm(unit="docs", disable=args.no_progress, file=sys.stderr) as bar:

            def progress(stats: IngestStats) -> None:
                live[:] = [stats]
                bar.set_postfix_str(
                    f"enc {stats.encode_busy:.0%} wr {stats.write_busy:.0%} retries {stats.retries} "
                    f"dead {stats.dead_lettered} stale {stats.stale}",
                    refresh=False,
                )

            stats = ingest(
                source,
                encoder=encoder,
                backend=backend,
                dense_encoder=dense,
                run=run,
                pipeline=layout,
                pruning=pruning(args),
                on_batch=bar.update,
                on_progress=progress,
            )
        done = not (stats.interrupted or args.no_optimize)
        return stats, optimize_target(backend) if done else None


def _ingest_on_ray(
    args: argparse.Namespace,
    run: RunOptions,
    target: Target,
    options: dict[str, Any],
    live: list[IngestStats],
) -> _Ran:
    import ray

    from sparsebridge.ingest.ray import RayOptions, ray_ingest

    if args.device:
        raise ValueError("--device does not apply to --engine ray: use --gpus-per-actor")
    dense = load_dense(args)
    layout = RayOptions(
        actors=args.actors,
        gpus_per_actor=args.gpus_per_actor,
        cpus_per_actor=args.cpus_per_actor,
        batch_size=args.batch_size,
        writers=1 if target.embedded else args.writers,  # an embedded store admits one process
    )
    ray.init(address=args.ray_address, include_dashboard=False, log_to_driver=args.verbose)
    stats = ray_ingest(
        args.input,
        model=args.model,
        target=args.to,
        options=layout,
        run=run,
        pruning=pruning(args),
        backend_options=backend_options(args, target, dense, **options),
        dense_model=args.dense_model,
        trust_remote_code=args.trust_remote_code,
        id_field=args.id_field,
        text_field=args.text_field,
        metadata_fields=args.metadata_fields,
    )
    if args.no_optimize:
        return stats, None
    with open_target(args, target, dense, **options) as backend:  # the writer actor let go of it
        return stats, optimize_target(backend)


COMMAND = Command(
    "ingest", "encode a JSONL, CSV or Parquet file and write it to a backend (resumable)", _arguments, _run
)
