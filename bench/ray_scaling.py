"""Ingest throughput on Ray with 1, 2 and 4 encoder actors, next to single-process ingest(), one run.

    python bench/ray_scaling.py                       # splade-tiny on this machine's CPUs
    python bench/ray_scaling.py --docs 8000 --output bench/results/ray-cpu-2core.jsonl

Every configuration ingests the same synthetic JSONL corpus into ``memory://`` (an in-memory sink,
so the numbers are the pipeline's, not an engine's). For each Ray run it reports the wall time of
``ray_ingest`` (``total_s``: actor start-up and model loads included), the time until the first
batch was written (``first_batch_s``), and the steady rate between the first and the last batch
written (``steady_docs_per_s``, from the journal's timestamps: with several actors, whose first
batches all wait for their start-up, it overstates the rate). ``cpus_per_actor`` splits this
machine's cores between the actors (one torch thread each at least). The Ray cluster is local
(``ray.init(num_cpus=4)``), started once; its start-up time is reported alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray
import torch

from sparsebridge.backends import MemoryBackend
from sparsebridge.encoder import Encoder
from sparsebridge.ingest import JsonlSource, ingest
from sparsebridge.ingest.ray import JOURNAL_DIR, RayOptions, ray_ingest

WORDS = (
    "river water flow delta bank flood stream valley bridge planet star orbit moon galaxy telescope "
    "rocket comet protein gene cell enzyme membrane virus vaccine immune compiler python memory thread "
    "cache index query server bread coffee cheese pasta oven sugar flour recipe"
).split()


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ray": ray.__version__,
    }


def write_corpus(path: Path, count: int) -> None:
    rng = random.Random(5)
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 120)))
            out.write(json.dumps({"id": f"doc-{i}", "text": text}) + "\n")


def journal_times(run_dir: Path) -> list[tuple[float, int]]:
    """(time, items) of every journaled batch, in time order."""
    entries = []
    for path in (run_dir / JOURNAL_DIR).glob("*.jsonl"):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            entries.append((float(entry["at"]), len(entry["keys"])))
    return sorted(entries)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--actors", default="1,2,4", help="comma-separated actor counts")
    parser.add_argument("--output", type=Path, help="append the results as one JSON line here")
    args = parser.parse_args()

    result: dict[str, Any] = {"machine": machine(), "docs": args.docs, "batch_size": args.batch_size}
    result["load_before"] = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "docs.jsonl"
        write_corpus(corpus, args.docs)

        encoder = Encoder.load("splade-tiny", device="cpu")
        started = time.perf_counter()
        stats = ingest(
            JsonlSource(corpus), encoder=encoder, backend=MemoryBackend(), batch_size=args.batch_size
        )
        elapsed = time.perf_counter() - started
        result["single_process"] = {"total_s": round(elapsed, 2), "docs_per_s": round(args.docs / elapsed, 1)}
        print(f"single process: {args.docs / elapsed:.0f} docs/s ({elapsed:.1f} s)", flush=True)

        started = time.perf_counter()
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
        result["ray_init_s"] = round(time.perf_counter() - started, 2)
        runs = []
        cores = os.cpu_count() or 1
        for actors in (int(a) for a in args.actors.split(",")):
            run_dir = Path(tmp) / f"run-{actors}"
            cpus = max(1, cores // actors)
            started = time.perf_counter()
            stats = ray_ingest(
                corpus,
                model="splade-tiny",
                target="memory://",
                run_dir=run_dir,
                options=RayOptions(actors=actors, cpus_per_actor=cpus, batch_size=args.batch_size),
            )
            ended = time.time()
            total = time.perf_counter() - started
            times = journal_times(run_dir)
            first_at = ended - total
            steady_items = sum(n for _, n in times[1:])
            steady_s = times[-1][0] - times[0][0]
            run = {
                "actors": actors,
                "cpus_per_actor": cpus,
                "written": stats.written,
                "total_s": round(total, 2),
                "docs_per_s": round(args.docs / total, 1),
                "first_batch_s": round(times[0][0] - first_at, 2),
                "steady_docs_per_s": round(steady_items / steady_s, 1) if steady_s > 0 else None,
            }
            runs.append(run)
            print(json.dumps(run), flush=True)
        result["ray"] = runs
        ray.shutdown()
    result["load_after"] = os.getloadavg()
    line = json.dumps(result)
    print(line)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
