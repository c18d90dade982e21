"""``sparsebridge``: a thin command line over the library.

Exit codes: 0 success, 1 a backend, model or file-system failure, 2 bad usage or bad input
(nothing written), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sparsebridge.backends import (
    DEFAULT_TARGET,
    Engine,
    Refresh,
    RetryPolicy,
    Target,
    open_backend,
    parse_target,
)
from sparsebridge.backends.model_identity import ModelIdentity, check_model
from sparsebridge.errors import BackendError, InputError, SparsebridgeError

logger = logging.getLogger("sparsebridge")

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


_BATCH_SIZE_HELP = "documents per batch (default: 16384 per GPU, 256 on a CPU)"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # the clients log every failed request with a traceback; our errors say what failed
        for name in ("opensearch", "elasticsearch", "elastic_transport", "urllib3"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        result: int = args.run(args)
        return result
    except InputError as e:
        _fail(str(e))
        return EXIT_BAD_INPUT
    except (SparsebridgeError, ValueError) as e:
        _fail(str(e))
        return EXIT_FAILURE if isinstance(e, SparsebridgeError) else EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except OSError as e:  # a file we read or write: full disk, permissions, a missing directory
        where = f"{e.filename}: " if e.filename else ""
        _fail(f"{where}{e.strerror or e}")
        return EXIT_FAILURE


def _fail(message: str) -> None:
    print(f"sparsebridge: error: {message}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparsebridge", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log one INFO line per batch")
    # the global options again, for every subcommand (SUPPRESS: given before it, they are kept)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="as above")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_subparser(common))

    encode = commands.add_parser("encode", help="encode a JSONL file into sparse vectors (JSONL)")
    _model_options(encode)
    _input_options(encode)
    encode.add_argument("--output", required=True, type=Path, help="where to write the vectors (JSONL)")
    encode.add_argument("--queries", action="store_true", help="use the model's query path")
    encode.add_argument(
        "--allow-empty-vectors",
        action="store_true",
        help="write documents whose vector is empty (default: refuse them, nothing written)",
    )
    encode.set_defaults(run=_encode)

    ingest = commands.add_parser(
        "ingest", help="encode a JSONL, CSV or Parquet file and write it to a backend (resumable)"
    )
    _model_options(ingest)
    _input_options(ingest)
    _target_options(ingest)
    ingest.add_argument(
        "--idf", action="store_true", help="Qdrant: create the collection with the IDF modifier"
    )
    ingest.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ingest.add_argument(
        "--no-optimize",
        action="store_true",
        help="Qdrant Edge: do not optimize the shard's segments when the run completes (every later "
        "open then rebuilds them in memory)",
    )
    ingest.add_argument(
        "--run-dir",
        type=Path,
        help="checkpoint and dead-letter file (default: .sparsebridge/runs/<input>-<hash of input, target>)",
    )
    ingest.add_argument("--resume", action="store_true", help="continue the run checkpointed in the run dir")
    ingest.add_argument(
        "--run-number", type=_positive_int, help="version of every write (default: time in ms, monotonic)"
    )
    ingest.add_argument("--writers", type=_positive_int, default=2, help="concurrent writers (default 2)")
    ingest.add_argument(
        "--short-gil-switches",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="lower this process's GIL switch interval to 0.5 ms while ingesting, so that the encoder "
        "takes the GIL back quickly from the writers (default on)",
    )
    ingest.add_argument(
        "--max-dead-letter-fraction",
        type=_non_negative_float,
        default=0.01,
        help="stop when more than this fraction of items is dead-lettered (default 0.01)",
    )
    ingest.add_argument("--stats-json", type=Path, help="write the final stats as JSON here")
    ingest.add_argument("--dense-model", help="also store a dense embedding (a sentence-transformers model)")
    _model_mismatch_option(ingest)
    ingest.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process (threads); ray: a Ray cluster (the [ray] extra)",
    )
    ingest.add_argument(
        "--ray-address", help="Ray: the cluster to join (default: RAY_ADDRESS, else a local one)"
    )
    ingest.add_argument("--actors", type=_positive_int, default=1, help="Ray: encoder actors (default 1)")
    ingest.add_argument(
        "--gpus-per-actor",
        type=_non_negative_float,
        default=0.0,
        help="Ray: GPUs per encoder actor (default 0: CPU; a fraction shares a GPU)",
    )
    ingest.add_argument(
        "--cpus-per-actor",
        type=_non_negative_float,
        default=1.0,
        help="Ray: CPUs per encoder actor, its torch threads on a CPU (default 1)",
    )
    ingest.set_defaults(run=_ingest)

    bench = commands.add_parser("bench", help="benchmarks")
    bench_commands = bench.add_subparsers(dest="bench", required=True, parser_class=_subparser(common))
    bench_ingest = bench_commands.add_parser(
        "ingest", help="encode-only, sink-only and pipeline rates, overlap efficiency, memory high-water mark"
    )
    _model_options(bench_ingest)
    _target_options(bench_ingest)
    bench_ingest.add_argument("--docs", type=_positive_int, default=100_000, help="pipeline run documents")
    bench_ingest.add_argument(
        "--encode-docs", type=_positive_int, default=10_000, help="encode-only documents"
    )
    bench_ingest.add_argument("--sink-docs", type=_positive_int, default=20_000, help="sink-only documents")
    bench_ingest.add_argument("--batch-size", type=_positive_int, help=_BATCH_SIZE_HELP)
    bench_ingest.add_argument("--writers", type=_positive_int, default=2, help="concurrent writers")
    bench_ingest.add_argument("--output", type=Path, help="append the result as one JSON line here")
    bench_ingest.set_defaults(run=_bench_ingest)

    search = commands.add_parser("search", help="search a backend with a text query")
    _model_options(search)
    _target_options(search)
    search.add_argument("query", help="the query text")
    search.add_argument("-k", type=_positive_int, default=10, help="number of results (default 10)")
    _model_mismatch_option(search)
    _hybrid_options(search)
    search.set_defaults(run=_search)

    evaluate = commands.add_parser("eval", help="evaluate a model on a BEIR-format dataset through a backend")
    _model_options(evaluate)
    _target_options(evaluate)
    dataset = evaluate.add_mutually_exclusive_group(required=True)
    dataset.add_argument(
        "--dataset", help="BEIR dataset directory, or nanobeir/NAME: a NanoBEIR set (hub, then cached)"
    )
    dataset.add_argument(
        "--all-nanobeir", action="store_true", help="every NanoBEIR set in turn: a per-set table and the mean"
    )
    evaluate.add_argument(
        "--nanobeir-repository",
        help="dataset holding the NanoBEIR sets (default: sentence-transformers/NanoBEIR-en)",
    )
    evaluate.add_argument("--split", default="test", help="qrels split: qrels/SPLIT.tsv (default: test)")
    evaluate.add_argument("--output", type=Path, help="write the results as JSON here")
    evaluate.add_argument("--batch-size", type=_positive_int, default=64, help="documents per ingest batch")
    _fusion_options(evaluate)
    evaluate.set_defaults(run=_eval)
    return parser


def _subparser(common: argparse.ArgumentParser) -> Any:
    """A parser class for subcommands that also accept the ``common`` options."""

    class Subparser(argparse.ArgumentParser):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs, parents=[common])

    return Subparser


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="hub name, local directory, or a bundled test model (splade-tiny)"
    )
    parser.add_argument(
        "--device",
        help="cuda, cpu, cuda:1, ... or several, comma-separated (cuda:0,cuda:1: one model copy on each; "
        "default: cuda when present)",
    )
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the model's custom code")
    parser.add_argument("--top-k", type=_positive_int, help="keep at most this many active dimensions")
    parser.add_argument("--min-weight", type=_non_negative_float, default=0.0, help="drop weights <= this")


def _model_mismatch_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-model-mismatch",
        action="store_true",
        help="use a target that records another model (default: refuse; the scores would be meaningless)",
    )


def _input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, type=Path, help="JSONL file, one document per line")
    parser.add_argument("--id-field", default="id", help="field holding the document id (default: id)")
    parser.add_argument("--text-field", default="text", help="field holding the text (default: text)")
    parser.add_argument(
        "--metadata-fields",
        help="comma-separated fields kept as metadata (default: every other field; '' for none)",
    )
    parser.add_argument("--batch-size", type=_positive_int, help=_BATCH_SIZE_HELP)


def _target_options(parser: argparse.ArgumentParser) -> None:
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
        type=_non_negative_float,
        default=60.0,
        help="give up on an unreachable or overloaded backend after this long (default 60)",
    )


def _load_encoder(args: argparse.Namespace) -> Any:
    import transformers

    from sparsebridge.encoder import Encoder

    if not args.verbose:
        transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    if args.device and "," in args.device:
        devices = [name.strip() for name in args.device.split(",")]
        return Encoder.load(args.model, devices=devices, trust_remote_code=args.trust_remote_code)
    return Encoder.load(args.model, device=args.device, trust_remote_code=args.trust_remote_code)


def _open_target(args: argparse.Namespace, target: Target | None = None, **options: Any) -> Any:
    """The backend of ``--to`` (or of ``target``), with the connection options that apply to it."""
    target = target or parse_target(args.to)
    return open_backend(target, **_backend_options(args, target, **options))


def _backend_options(args: argparse.Namespace, target: Target, **options: Any) -> dict[str, Any]:
    """The keyword options of ``open_backend`` for ``target``: retries, connection, credentials."""
    retry = RetryPolicy(max_total_seconds=max(args.max_retry_seconds, 0.001))
    if target.cluster:  # connection options; the Qdrant API key (QDRANT_API_KEY) is never sent elsewhere
        options.update(username=args.username, password=args.password, ca_certs=args.ca_certs)
        options.update(verify_certs=not args.no_verify_certs)
    if args.es_field_type is not None:
        if target.engine is not Engine.ELASTICSEARCH:
            raise ValueError("--es-field-type applies to elasticsearch:// targets only")
        options["field_type"] = args.es_field_type
    api_key = args.api_key if target.engine is Engine.QDRANT else None
    return {"api_key": api_key, "retry": retry, **options}


def _checked_source(args: argparse.Namespace) -> tuple[Any, int]:
    """The input source, after one full pass that refuses bad input before any work."""
    from sparsebridge.ingest import JsonlSource, check_source

    fields = None
    if args.metadata_fields is not None:
        fields = tuple(f for f in args.metadata_fields.split(",") if f)
    source = JsonlSource(args.input, args.id_field, args.text_field, fields)
    count, errors = check_source(source)
    if errors:
        details = "\n".join(f"  {e}" for e in errors)
        raise InputError(f"{len(errors)} bad input line(s), nothing was written:\n{details}")
    if count == 0:
        raise InputError("no documents", source=str(args.input))
    return source, count


def _encode(args: argparse.Namespace) -> int:
    source, _ = _checked_source(args)
    partial = args.output.with_name(args.output.name + ".partial")
    try:
        out = partial.open("w", encoding="utf-8")  # before the model loads: a bad path fails at once
    except OSError as e:
        raise SparsebridgeError(f"cannot write {args.output}: {e.strerror}") from None
    try:
        with out:
            encoder = _load_encoder(args)
            summary = _encode_into(out, source, encoder, args)
        partial.replace(args.output)  # the output appears whole or not at all
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise SparsebridgeError(f"cannot write {args.output}: {e.strerror}; nothing was written") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    print(summary, file=sys.stderr)
    return 0


def _encode_into(out: Any, source: Any, encoder: Any, args: argparse.Namespace) -> str:
    """Encode and write every document; returns a one-line summary (with the truncated texts)."""
    from sparsebridge.ingest.stages import TokenCounter

    tokens = TokenCounter.for_encoder(encoder)
    batch_size = args.batch_size or encoder.suggested_batch_size
    batch: list[Any] = []
    count = truncated = 0
    for document in source:
        batch.append(document)
        count += 1
        truncated += tokens is not None and tokens.too_long(document.text)
        if len(batch) == batch_size:
            _encode_batch(out, batch, encoder, args)
            batch = []
    if batch:
        _encode_batch(out, batch, encoder, args)
    summary = f"encoded {count} texts into {args.output}"
    if tokens is not None:
        summary += f"; {truncated} longer than the model's limit of {tokens.max_tokens} tokens, truncated"
    return summary


def _encode_batch(out: Any, batch: list[Any], encoder: Any, args: argparse.Namespace) -> None:
    encode = encoder.encode_queries if args.queries else encoder.encode_documents
    vectors = encode([d.text for d in batch], top_k=args.top_k, min_weight=args.min_weight)
    empty = [d.id for d, v in zip(batch, vectors, strict=True) if len(v) == 0]
    if empty and not args.allow_empty_vectors:
        raise InputError(
            f"{len(empty)} document(s) encode to an empty vector (no weight above --min-weight "
            f"{args.min_weight}), e.g. {', '.join(repr(i) for i in empty[:5])}; nothing was written "
            "(--allow-empty-vectors writes them)"
        )
    for document, vector in zip(batch, vectors, strict=True):
        out.write(json.dumps({"id": document.id, **vector.to_json_dict()}) + "\n")


def _run_dir(args: argparse.Namespace) -> Path:
    if args.run_dir is not None:
        return Path(args.run_dir)
    import hashlib

    key = hashlib.sha1(f"{args.input.resolve()}\n{parse_target(args.to).uri}".encode()).hexdigest()[:10]
    return Path(".sparsebridge") / "runs" / f"{args.input.stem}-{key}"


def _ingest(args: argparse.Namespace) -> int:
    """One run (which locks its run dir); ``--stats-json`` is written whether it succeeds or not."""
    live: list[Any] = []  # the run's live stats, once it started
    try:
        if args.max_dead_letter_fraction > 1:
            raise ValueError("--max-dead-letter-fraction must be at most 1")
        if not args.input.exists():
            raise InputError("input file does not exist", source=str(args.input))
        return _run_ingest(args, live)
    except BaseException as e:
        if args.stats_json is not None:
            stats = live[0].to_json() if live else {}
            try:
                _write_stats(args.stats_json, {**stats, "error": str(e) or type(e).__name__})
            except OSError as failed:
                _fail(f"{args.stats_json}: {failed.strerror}")
        raise


def _write_stats(path: Path, stats: dict[str, Any]) -> None:
    path.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")


def _run_ingest(args: argparse.Namespace, live: list[Any]) -> int:
    if args.engine == "ray":
        return _run_ray_ingest(args)
    from tqdm import tqdm

    from sparsebridge.ingest import open_source
    from sparsebridge.ingest.pipeline import IngestStats, ingest

    fields = None
    if args.metadata_fields is not None:
        fields = tuple(f for f in args.metadata_fields.split(",") if f)
    source = open_source(
        args.input, id_field=args.id_field, text_field=args.text_field, metadata_fields=fields
    )
    run_dir = _run_dir(args)
    dense = _load_dense(args)
    options: dict[str, Any] = {"dense_size": dense.dimension} if dense is not None else {}
    if parse_target(args.to).cluster:
        # an acknowledged bulk is durable (translog) before it is searchable: no refresh per request
        options["refresh"] = Refresh.NONE
    backend = _open_target(args, idf=args.idf, **options)
    try:
        encoder = _load_encoder(args)
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
                batch_size=args.batch_size,
                top_k=args.top_k,
                min_weight=args.min_weight,
                on_batch=bar.update,
                on_progress=progress,
                dense_encoder=dense,
                run_dir=run_dir,
                resume=args.resume,
                run_number=args.run_number,
                writers=args.writers,
                max_dead_letter_fraction=args.max_dead_letter_fraction,
                handle_signals=True,
                allow_model_mismatch=args.allow_model_mismatch,
                short_gil_switches=args.short_gil_switches,
            )
        if not stats.interrupted:
            _optimize(args, backend)
    finally:
        backend.close()
    if args.stats_json is not None:
        _write_stats(args.stats_json, {**stats.to_json(), "error": None})
    print(f"run {stats.run_number}: {stats.summary()}", file=sys.stderr)
    if stats.dead_lettered:
        print(f"dead-lettered items are listed in {run_dir / 'dead_letter.jsonl'}", file=sys.stderr)
    if stats.interrupted:
        _fail(f"interrupted after {stats.position} items; continue with --resume (run dir {run_dir})")
        return 130
    print(f"wrote {stats.written} documents to {parse_target(args.to).uri}")
    return 0


def _optimize(args: argparse.Namespace, backend: Any) -> None:
    """Optimize a Qdrant Edge shard after a completed run, unless ``--no-optimize`` (other targets:
    nothing to do). Appendable segments are rebuilt in memory on every open of the shard (each
    ``search`` opens it); optimized ones open at once (see docs/qdrant.md)."""
    optimize = getattr(backend, "optimize", None)
    if args.no_optimize or optimize is None:
        return
    started = time.perf_counter()
    changed = optimize()
    took = time.perf_counter() - started
    if changed:
        print(f"optimized the shard's segments in {took:.1f} s", file=sys.stderr)
    else:
        print(f"the shard's segments were already optimal (checked in {took:.1f} s)", file=sys.stderr)


def _run_ray_ingest(args: argparse.Namespace) -> int:
    import ray

    from sparsebridge.ingest.ray import RayOptions, ray_ingest

    if args.device:
        raise ValueError("--device does not apply to --engine ray: use --gpus-per-actor")
    target = parse_target(args.to)
    dense = _load_dense(args)
    options: dict[str, Any] = {"dense_size": dense.dimension} if dense is not None else {}
    if target.cluster:
        options["refresh"] = Refresh.NONE
    writers = 1 if target.embedded else args.writers  # an embedded store admits one process
    layout = RayOptions(
        actors=args.actors,
        gpus_per_actor=args.gpus_per_actor,
        cpus_per_actor=args.cpus_per_actor,
        batch_size=args.batch_size,
        writers=writers,
    )
    fields = None
    if args.metadata_fields is not None:
        fields = tuple(f for f in args.metadata_fields.split(",") if f)
    ray.init(address=args.ray_address, include_dashboard=False, log_to_driver=args.verbose)
    stats = ray_ingest(
        args.input,
        model=args.model,
        target=args.to,
        run_dir=_run_dir(args),
        options=layout,
        backend_options=_backend_options(args, target, idf=args.idf, **options),
        dense_model=args.dense_model,
        trust_remote_code=args.trust_remote_code,
        top_k=args.top_k,
        min_weight=args.min_weight,
        resume=args.resume,
        run_number=args.run_number,
        max_dead_letter_fraction=args.max_dead_letter_fraction,
        id_field=args.id_field,
        text_field=args.text_field,
        metadata_fields=fields,
        allow_model_mismatch=args.allow_model_mismatch,
    )
    if target.engine is Engine.QDRANT_EDGE and not args.no_optimize:
        backend = _open_target(args, target, idf=args.idf, **options)  # the writer actor has let go of it
        try:
            _optimize(args, backend)
        finally:
            backend.close()
    if args.stats_json is not None:
        _write_stats(args.stats_json, {**stats.to_json(), "error": None})
    print(f"run {stats.run_number}: {stats.summary()}", file=sys.stderr)
    if stats.dead_lettered:
        print(f"dead-lettered items are listed in {_run_dir(args) / 'dead_letter.jsonl'}", file=sys.stderr)
    print(f"wrote {stats.written} documents to {parse_target(args.to).uri}")
    return 0


def _bench_ingest(args: argparse.Namespace) -> int:
    import time

    from sparsebridge.ingest.bench import bench_ingest

    target = parse_target(args.to)
    if target.name is None:
        raise ValueError(
            "bench ingest needs a target with an index or collection name, e.g. opensearch://HOST/INDEX"
        )
    stamp = time.strftime("%Y%m%d%H%M%S")

    def backend_factory(phase: str) -> Any:
        options: dict[str, Any] = {"refresh": Refresh.NONE} if target.cluster else {}
        return _open_target(args, target.renamed(f"{target.name}-{phase}-{stamp}"), **options)

    encoder = _load_encoder(args)
    result = bench_ingest(
        encoder=encoder,
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


def _search(args: argparse.Namespace) -> int:
    if not args.query.strip():
        raise InputError("the query is empty")
    dense = _load_dense(args)
    if dense is not None and not args.hybrid:
        raise ValueError("--dense-model needs --hybrid")
    target = parse_target(args.to)
    if target.path is not None and not Path(target.path).is_dir():  # a search never creates storage
        raise BackendError(
            f"collection {target.name!r} does not exist (ingest into it first): "
            f"no storage directory {target.path}",
            backend=target.engine.value,
        )
    backend = _open_target(args, target, **({"dense_size": dense.dimension} if dense is not None else {}))
    try:
        encoder = _load_encoder(args)
        identity = ModelIdentity.of(encoder)
        check_model(backend, identity, record=False, allow_mismatch=args.allow_model_mismatch)
        [query] = encoder.encode_queries([args.query], top_k=args.top_k, min_weight=args.min_weight)
        hits = _hybrid_search(args, backend, query, dense) if args.hybrid else backend.search(query, k=args.k)
    finally:
        backend.close()
    if not hits:
        print("no results")
    for rank, hit in enumerate(hits, start=1):
        snippet = " ".join(str(hit.payload.get("text", "")).split())
        snippet = snippet if len(snippet) <= 80 else snippet[:77] + "..."
        print(f"{rank:>3}  {hit.score:9.4f}  {hit.id}  {snippet}")
    return 0


def _fusion_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dense-model", help="dense leg: any sentence-transformers model (bundled: minilm)")
    parser.add_argument(
        "--fusion",
        choices=["rrf", "dbsf", "minmax", "zscore", "sum"],
        default="rrf",
        help="how legs are fused (default rrf); see docs/hybrid.md",
    )
    parser.add_argument(
        "--rrf-k", type=int, default=60, help="RRF rank constant, 1-based ranks (default 60, the paper's)"
    )
    parser.add_argument("--weights", help="one weight per leg: sparse,dense,bm25 (those present)")
    parser.add_argument("--candidates", type=_positive_int, default=100, help="hits per leg before fusion")


def _hybrid_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hybrid", action="store_true", help="fuse sparse with dense and/or BM25 legs")
    parser.add_argument("--bm25", action="store_true", help="add a BM25 leg (Elasticsearch/OpenSearch)")
    _fusion_options(parser)


def _fusion(args: argparse.Namespace) -> Any:
    from sparsebridge.query import Fusion, FusionMethod

    weights = None
    if args.weights:
        try:
            weights = tuple(float(w) for w in args.weights.split(","))
        except ValueError as e:
            raise ValueError(f"--weights must be numbers separated by commas, got {args.weights!r}") from e
    return Fusion(FusionMethod(args.fusion), k=args.rrf_k, weights=weights)


def _load_dense(args: argparse.Namespace) -> Any:
    if not getattr(args, "dense_model", None):
        return None
    import transformers

    from sparsebridge.encoder.dense import DenseEncoder

    if not args.verbose:
        transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    device = args.device.split(",")[0] if args.device else None  # the dense model takes the first device
    return DenseEncoder.load(args.dense_model, device=device, trust_remote_code=args.trust_remote_code)


def _hybrid_search(args: argparse.Namespace, backend: Any, query: Any, dense: Any) -> Any:
    from sparsebridge.backends.base import SupportsHybridSearch
    from sparsebridge.query import HybridQuery

    if not isinstance(backend, SupportsHybridSearch):
        raise ValueError(f"the {backend.name} backend has no hybrid search")
    hybrid = HybridQuery(
        sparse=query,
        dense=dense.encode_queries([args.query])[0] if dense is not None else None,
        text=args.query if args.bm25 else None,
        candidates=args.candidates,
    )
    if len(hybrid.legs) < 2:
        raise ValueError("--hybrid needs a second leg: --dense-model and/or --bm25")
    return backend.search_hybrid_batch([hybrid], _fusion(args), k=args.k)[0]


def _eval(args: argparse.Namespace) -> int:
    from sparsebridge.eval import run_eval
    from sparsebridge.eval.nanobeir import NANOBEIR, load_dataset_argument, nanobeir_mean, nanobeir_table

    names = [f"nanobeir/{name}" for name in NANOBEIR] if args.all_nanobeir else [args.dataset]
    repository = args.nanobeir_repository
    datasets = {name: load_dataset_argument(name, split=args.split, repository=repository) for name in names}
    fusion = _fusion(args)
    dense = _load_dense(args)
    target = parse_target(args.to)
    encoder = None
    reports = {}
    for name, dataset in datasets.items():
        # every set gets its own collection or index: a target must hold one corpus only
        where = (
            target.renamed(f"{target.name}-{name.split('/')[-1]}")
            if len(names) > 1 and target.name
            else target
        )
        backend = _open_target(args, where, **({"dense_size": dense.dimension} if dense is not None else {}))
        try:
            encoder = encoder or _load_encoder(args)
            reports[name.split("/")[-1]] = run_eval(
                dataset,
                encoder=encoder,
                backend=backend,
                dense_encoder=dense,
                fusion=fusion,
                candidates=args.candidates,
                batch_size=args.batch_size,
                top_k=args.top_k,
            )
        finally:
            backend.close()
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


if __name__ == "__main__":
    sys.exit(main())
