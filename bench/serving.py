"""Queries as an app sends them: one query per request, sparsebridge against sentence-transformers, one run.

    PYTHONPATH=src python bench/serving.py --model splade-tiny --http --json bench/results/serving.jsonl
    PYTHONPATH=src python bench/serving.py --model rotary-mlm --layers 28 --hidden 768 --http

In one run, on the same queries (random vocabulary words, ``--words`` on average: 6 words are
about 8-12 tokens, as MS MARCO queries are):

1. **A lone query**: sparsebridge's ``encode_queries([q])`` and sentence-transformers'
   ``encode_query([q])``, one query at a time, the sides taking turns in blocks: p50 and p99.
2. **In process**: for each concurrency C, C threads send one query per call in a closed loop
   (each sends its next query when its last one is answered) to one shared ``Encoder``
   (concurrent calls share passes) and, separately, to one shared sentence-transformers model
   called per request. Throughput and p50/p99 latency.
3. **Over HTTP** (``--http``): ``sparsebridge serve`` on loopback, loaded from the same model
   directory, driven by wrk (``apt-get install wrk``) with a Lua script that posts
   text-embeddings-inference bodies (``{"inputs": "<query>"}``) to ``/embed_sparse``, C connections.

Every configuration stops after ``--requests`` answers or ``--seconds`` seconds, whichever comes
first (requests in flight then finish). ``rotary-mlm`` is the NeoBERT-shaped custom-code test model
of ``tests/remote_code/`` with random weights (``--layers`` x ``--hidden``; 28 x 768 is the seed
model's size), loaded with ``trust_remote_code``. The vectors of both sides are compared first
(the same non-zero dimensions; the largest weight difference, next to sentence-transformers' own
difference between one query at a time and a batch). ``--json`` appends one line with the machine
(CPU model, flags, caps, load average before and after each configuration).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encode import make_texts
from machine import describe, summary

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def lone_queries(
    sides: dict[str, Callable[[list[str]], Any]], queries: list[str], count: int, seconds: float
) -> dict[str, dict[str, float]]:
    """p50/p99 of one query at a time for each side, the sides taking turns in blocks of 10 queries.

    Blocks, not single queries: a switch of side leaves the other side's torch worker threads
    spinning for a moment, which would slow whichever side runs next. The queries are sent from
    a thread of their own, as from a web server's worker and as in :func:`closed_loop`.
    """
    latencies: dict[str, list[float]] = {name: [] for name in sides}
    deadline = time.perf_counter() + seconds

    def send() -> None:
        for block in range(0, count, 10):
            for name, encode in sides.items():
                for i in range(block, min(block + 10, count)):
                    start = time.perf_counter()
                    encode([queries[i % len(queries)]])
                    latencies[name].append(time.perf_counter() - start)
            if time.perf_counter() > deadline:
                return

    sender = threading.Thread(target=send)
    sender.start()
    sender.join()
    return {name: {**percentiles(times), "requests": len(times)} for name, times in latencies.items()}


def closed_loop(
    encode: Callable[[list[str]], Any], queries: list[str], concurrency: int, requests: int, seconds: float
) -> dict[str, Any]:
    """``concurrency`` threads, each sending its next query when the last is answered."""
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + seconds
    finished = [start]

    def work() -> None:
        while time.perf_counter() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            sent = time.perf_counter()
            try:
                encode([queries[i % len(queries)]])
            except Exception as e:  # recorded: a baseline that fails under concurrency says so
                errors.append(f"{type(e).__name__}: {e}"[:200])
                continue
            done = time.perf_counter()
            with lock:
                latencies.append(done - sent)
                finished[0] = max(finished[0], done)

    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = finished[0] - start
    result: dict[str, Any] = {
        "requests": len(latencies),
        "seconds": elapsed,
        "qps": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "errors": len(errors),
    }
    if latencies:
        result.update(percentiles(latencies))
    if errors:
        result["first_error"] = errors[0]
    return result


WRK_SCRIPT = """
local bodies = {BODIES}
local max_requests = {MAX_REQUESTS}
local sent, answered = 0, 0
request = function()
  sent = sent + 1
  return wrk.format("POST", "/embed_sparse", {["Content-Type"] = "application/json"},
                    bodies[(sent % #bodies) + 1])
end
response = function(status, headers, body)
  answered = answered + 1
  if answered >= max_requests then wrk.thread:stop() end
end
done = function(summary, latency, requests)
  io.write(string.format(
    'WRK {"requests": %d, "duration_us": %d, "status_errors": %d, "timeouts": %d, ' ..
    '"connect_errors": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.timeout,
    summary.errors.connect, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""


def wrk_script(queries: list[str], max_requests: int) -> str:
    bodies = ", ".join(json.dumps(json.dumps({"inputs": q})) for q in queries)
    return WRK_SCRIPT.replace("{BODIES}", "{" + bodies + "}").replace("{MAX_REQUESTS}", str(max_requests))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def service(path: str, remote: bool, port: int, log: Path) -> Iterator[str]:
    """``sparsebridge serve`` on loopback for the duration of the block (stopped with SIGTERM)."""
    command = [sys.executable, "-m", "sparsebridge.cli", "serve", "--model", path, "--device", "cpu",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    if remote:
        command.append("--trust-remote-code")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None:
                tail = log.read_text()[-2000:]
                raise RuntimeError(f"sparsebridge serve exited ({process.returncode}): {tail}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("sparsebridge serve did not become healthy in 600 s")
            time.sleep(0.5)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def drain(url: str, limit: float = 300) -> None:
    """Wait until the service has answered every request admitted (wrk stops with some in flight)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        depth = next(
            (line.split()[-1] for line in text.splitlines() if line.startswith("sparsebridge_queue_depth ")),
            "0",
        )
        if float(depth) == 0:
            return
        time.sleep(0.5)


def over_http(url: str, script: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    """wrk with ``concurrency`` connections for ``seconds``; then waits for the service to drain.

    Latency percentiles are wrk's, over every answer (a 503 too); ``errors`` counts non-2xx
    answers, timeouts and connection errors.
    """
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "60s",
               "-s", str(script), url]  # fmt: skip
    start = time.perf_counter()
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120).stdout
    wall = time.perf_counter() - start
    line = next((line for line in output.splitlines() if line.startswith("WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {output[-2000:]}")
    raw = json.loads(line[4:])
    drain(url)
    # wrk reports its -d duration even when the request bound stopped it sooner: the wall time is
    # the true one then (its start-up is a few milliseconds)
    elapsed = min(raw["duration_us"] / 1e6, wall)
    ok = raw["requests"] - raw["status_errors"]
    return {
        "requests": raw["requests"],
        "seconds": elapsed,
        "qps": ok / elapsed if elapsed > 0 else 0.0,
        "errors": raw["status_errors"] + raw["timeouts"] + raw["connect_errors"],
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
    }


def model_directory(args: argparse.Namespace) -> tuple[str, str, bool]:
    """(path, name, needs trust_remote_code) of the model the run measures."""
    from sparsebridge.encoder.models import resolve_model

    if args.model != "rotary-mlm":
        return resolve_model(args.model), args.model, False
    sys.path.insert(0, str(ROOT / "tests"))
    from remote_code_model import build

    out = Path(tempfile.mkdtemp(prefix="rotary-mlm-")) / "model"
    hidden = args.hidden
    shape = {"layers": args.layers, "hidden": hidden, "heads": hidden // 64, "intermediate": hidden * 8 // 3}
    build(out, active_dims=180, **shape)
    return str(out), f"custom-code rotary MLM {args.layers}x{hidden}", True


def parity(ours: list[Any], reference: Any, reference_lone: Any) -> dict[str, Any]:
    """How our vectors compare with sentence-transformers' batch: the same non-zero dimensions, the
    largest weight difference, and sentence-transformers' own difference between encoding the
    queries one at a time and in one batch (float32 summation order alone)."""
    same_indices = all(
        np.array_equal(vector.indices, torch.nonzero(row > 0).flatten().numpy())
        for vector, row in zip(ours, reference, strict=True)
    )
    dense = torch.zeros_like(reference)
    for i, vector in enumerate(ours):
        dense[i, torch.as_tensor(vector.indices, dtype=torch.long)] = torch.as_tensor(vector.values)
    return {
        "same_indices": same_indices,
        "max_abs_diff": float((dense - reference).abs().max()),
        "reference_lone_vs_batch_max_abs_diff": float((reference_lone - reference).abs().max()),
        "within_1e-5": same_indices and float((dense - reference).abs().max()) <= 1e-5,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="splade-tiny", help="splade-tiny, rotary-mlm, a path or hub name")
    parser.add_argument("--layers", type=int, default=28, help="rotary-mlm: layers")
    parser.add_argument("--hidden", type=int, default=768, help="rotary-mlm: width")
    parser.add_argument("--words", type=int, default=6, help="average words per query")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--requests", type=int, default=2000, help="most requests per configuration")
    parser.add_argument("--seconds", type=float, default=20.0, help="most seconds per configuration")
    parser.add_argument("--lone", type=int, default=200, help="lone queries per side")
    parser.add_argument("--http", action="store_true", help="also measure `sparsebridge serve` with wrk")
    parser.add_argument("--json", type=Path, help="append the results to this JSON Lines file")
    parser.add_argument("--label", default="")
    args = parser.parse_args()

    from sentence_transformers import SparseEncoder

    from sparsebridge.encoder import Encoder
    from sparsebridge.encoder.loading import restore_constructor_buffers

    path, name, remote = model_directory(args)
    machine_before = describe()
    print(f"model {name}; {summary(machine_before)}", flush=True)
    reference = SparseEncoder(path, device="cpu", trust_remote_code=remote)
    restore_constructor_buffers(reference)
    reference.eval()
    encoder = Encoder.load(path, device="cpu", trust_remote_code=remote)
    head = str(encoder.stages.head_choice) if encoder.stages is not None else "generic path"
    linear = str(encoder.stages.linear_choice) if encoder.stages is not None else "generic path"
    queries = make_texts(encoder.model.tokenizer, 1000, args.words, seed=7)
    tokens = [len(ids) for ids in encoder.model.tokenizer(queries[:200])["input_ids"]]
    print(f"head {head}; linear layers {linear}; queries of {np.mean(tokens):.1f} tokens", flush=True)
    for query in queries[:5]:  # warm-up
        reference.encode_query([query])
        encoder.encode_queries([query])
    reference_batch = reference.encode_query(queries[:32], convert_to_sparse_tensor=False, batch_size=32)
    reference_lone = torch.stack(
        [reference.encode_query([query], convert_to_sparse_tensor=False)[0] for query in queries[:32]]
    )
    agreement = parity(encoder.encode_queries(queries[:32]), reference_batch, reference_lone)
    print(f"vectors against sentence-transformers' (batch of 32): {agreement}", flush=True)

    sides: dict[str, Callable[[list[str]], Any]] = {
        "sparsebridge": encoder.encode_queries,
        "sentence-transformers": reference.encode_query,
    }
    rows: list[dict[str, Any]] = []

    def record(config: str, concurrency: int, measure: Callable[[], dict[str, Any]]) -> None:
        load_before = os.getloadavg()[0]
        result = measure()
        row = {"config": config, "concurrency": concurrency, **result,
               "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)]}  # fmt: skip
        rows.append(row)
        p50, p99 = row.get("p50_ms", float("nan")), row.get("p99_ms", float("nan"))
        latency = f"p50 {p50:8.1f} ms  p99 {p99:8.1f} ms"
        print(
            f"{config:<34} c={concurrency:<3} {row['qps']:8.1f} q/s  {latency}  ({row['requests']} requests,"
            f" {row['errors']} errors, load {row['load_average_1m']})",
            flush=True,
        )

    lone = lone_queries(sides, queries, args.lone, args.seconds * 2)
    for side, result in lone.items():
        rows.append({"config": f"{side}, lone query", "concurrency": 1, **result})
        config = f"{side}, lone query"
        print(f"{config:<34}       p50 {result['p50_ms']:8.1f} ms  p99 {result['p99_ms']:8.1f} ms")
    for concurrency in args.concurrency:
        for side, encode in sides.items():
            record(
                f"{side}, in process",
                concurrency,
                lambda e=encode, c=concurrency: closed_loop(e, queries, c, args.requests, args.seconds),  # type: ignore[misc]
            )
    del reference, encoder, sides
    gc.collect()

    if args.http:
        if shutil.which("wrk") is None:
            raise SystemExit("--http needs wrk (apt-get install wrk)")
        work = Path(tempfile.mkdtemp(prefix="serving-bench-"))
        script = work / "embed.lua"
        script.write_text(wrk_script(queries, max(1, args.requests)))
        with service(path, remote, free_port(), work / "serve.log") as url:
            over_http(url, script, 2, 2)  # warm-up
            for concurrency in args.concurrency:
                record(
                    "sparsebridge serve, HTTP (wrk)",
                    concurrency,
                    lambda c=concurrency: over_http(url, script, c, args.seconds),  # type: ignore[misc]
                )

    def find(config: str, concurrency: int) -> dict[str, Any] | None:
        return next((r for r in rows if r["config"] == config and r["concurrency"] == concurrency), None)

    goals: dict[str, Any] = {}
    ours16, theirs16 = find("sparsebridge, in process", 16), find("sentence-transformers, in process", 16)
    lone_ours, lone_theirs = lone["sparsebridge"], lone["sentence-transformers"]
    if ours16 and theirs16 and theirs16["qps"] > 0 and "p99_ms" in ours16:
        goals["c16_throughput_ratio"] = ours16["qps"] / theirs16["qps"]
        goals["c16_p99_over_lone_p50"] = ours16["p99_ms"] / lone_ours["p50_ms"]
    http16 = find("sparsebridge serve, HTTP (wrk)", 16)
    if http16 and theirs16 and theirs16["qps"] > 0:
        goals["http_c16_throughput_ratio"] = http16["qps"] / theirs16["qps"]
        goals["http_c16_p99_over_lone_p50"] = http16["p99_ms"] / lone_ours["p50_ms"]
    goals["lone_p50_ratio"] = lone_theirs["p50_ms"] / lone_ours["p50_ms"]
    print("goals: " + ", ".join(f"{k} {v:.2f}" for k, v in goals.items()), flush=True)
    if args.json:
        entry = {
            "bench": "serving",
            "model": name,
            "machine": machine_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "head": head,
            "linear": linear,
            "query_tokens_mean": float(np.mean(tokens)),
            "parity": agreement,
            "requests_cap": args.requests,
            "seconds_cap": args.seconds,
            "label": args.label,
            "results": rows,
            "goals": goals,
            "torch": torch.__version__,
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        with args.json.open("a") as f:
            f.write(json.dumps(entry) + "\n")


if __name__ == "__main__":
    main()
