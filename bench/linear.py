"""The body's float32 linear layers on this CPU: torch's ``linear`` (its BLAS) against oneDNN with a
packed weight, at the layer shapes of a 28 x 768 NeoBERT-shaped model and of its vocabulary
projection, for a short query and for gathered batches.

    python bench/linear.py --json bench/results/linear.jsonl --label "quiet"

Each shape and token count is timed as the best of ``--rounds`` rounds, the two kernels taking
turns; the largest difference between their outputs is recorded next to the largest output (the
two sum in another order: float32 rounding, not another precision). ``--json`` appends one line
with the machine (CPU model, flags, caps, load average).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from machine import describe, summary

# (out_features, in_features): attention in/out, the gated MLP's up and down, the vocabulary projection
SHAPES = [(2304, 768), (768, 768), (4096, 768), (768, 2048), (30522, 768)]
TOKENS = [8, 16, 64, 128, 512]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20, help="calls per timed round")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--label", default="")
    args = parser.parse_args()

    machine = describe()
    print(summary(machine), flush=True)
    generator = torch.Generator().manual_seed(0)
    rows: list[dict[str, Any]] = []
    with torch.inference_mode():
        for out_features, in_features in SHAPES:
            weight = torch.randn(out_features, in_features, generator=generator) / in_features**0.5
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, batch_size=None)
            for tokens in TOKENS:
                x = torch.randn(tokens, in_features, generator=generator)
                repeats = max(
                    1, args.repeats * 128 // max(tokens, 128) // (4 if out_features > 10_000 else 1)
                )
                kernels = {
                    "torch": lambda x=x, w=weight: torch.nn.functional.linear(x, w),
                    "onednn": lambda x=x, p=packed: torch.ops.mkldnn._linear_pointwise(
                        x, p, None, "none", [], ""
                    ),
                }
                seconds: dict[str, float] = {}
                for kernel in kernels.values():  # warm-up
                    kernel()
                for _ in range(args.rounds):
                    for name, kernel in kernels.items():
                        start = time.perf_counter()
                        for _ in range(repeats):
                            kernel()
                        seconds[name] = min(seconds.get(name, float("inf")), time.perf_counter() - start)
                flops = 2 * tokens * in_features * out_features * repeats
                gflops = {name: flops / s / 1e9 for name, s in seconds.items()}
                torch_out, onednn_out = (kernel() for kernel in kernels.values())
                row = {
                    "shape": [out_features, in_features],
                    "tokens": tokens,
                    "gflops": {k: round(v, 1) for k, v in gflops.items()},
                    "onednn_over_torch": round(gflops["onednn"] / gflops["torch"], 2),
                    "max_abs_diff": float((torch_out - onednn_out).abs().max()),
                    "max_abs_output": float(torch_out.abs().max()),
                }
                rows.append(row)
                print(
                    f"{out_features:>6} x {in_features:<5} {tokens:>4} tokens: torch {gflops['torch']:6.1f} "
                    f"GFLOP/s, onednn {gflops['onednn']:6.1f} GFLOP/s ({row['onednn_over_torch']:.2f}x), "
                    f"max diff {row['max_abs_diff']:.1e} of {row['max_abs_output']:.1f}",
                    flush=True,
                )
    if args.json:
        entry = {
            "bench": "linear",
            "machine": machine,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "label": args.label,
            "results": rows,
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        with args.json.open("a") as f:
            f.write(json.dumps(entry) + "\n")


if __name__ == "__main__":
    main()
