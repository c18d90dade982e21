"""Per-shape first-call costs on the GPU: which stage pays for a batch shape it has not seen yet.

    python bench/gpu_shapes.py          # on a CUDA machine; prints one line per measurement

Times, for new batch shapes, the first and the second call of: the model body (the encoder's SDPA
choice, flash-only, and with a padding mask), the fused Triton head and the torch head; then the
fast path end to end on texts it has not seen (first pass), the same texts again, and a cProfile of
a first pass on other texts with the callers of blocking calls.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from encode import make_texts, random_splade

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def first_and_second(fn: Callable[[], Any]) -> tuple[float, float]:
    times = []
    for _ in range(2):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times[0], times[1]


def report(name: str, batch: int, length: int, first: float, second: float, extra: str = "") -> None:
    print(
        f"{name:<16} B={batch:<4} L={length:<4} first {first * 1e3:8.1f} ms, second {second * 1e3:7.1f} ms",
        extra,
    )


def triton_cache_files() -> int:
    root = Path(os.environ.get("TRITON_CACHE_DIR", Path.home() / ".triton" / "cache"))
    return sum(1 for _ in root.rglob("*")) if root.exists() else 0


def main() -> None:
    from sentence_transformers import SparseEncoder
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from sparsebridge.encoder import Encoder
    from sparsebridge.encoder.models import resolve_model
    from sparsebridge.encoder.stages import Head

    path = random_splade(12, 180, resolve_model("splade-tiny"), "cuda")
    model = SparseEncoder(path, device="cuda")
    model.max_seq_length = 256
    model.to(torch.bfloat16)
    encoder = Encoder(model)
    stages = encoder.stages
    print(
        "sdp enabled: flash",
        torch.backends.cuda.flash_sdp_enabled(),
        "mem_efficient",
        torch.backends.cuda.mem_efficient_sdp_enabled(),
        "cudnn",
        torch.backends.cuda.cudnn_sdp_enabled(),
    )

    def ids(batch: int, length: int) -> torch.Tensor:
        return torch.randint(1000, 20000, (batch, length), device="cuda")

    with torch.inference_mode():
        stages.body(ids(8, 16), None)  # CUDA context, cuBLAS handles
        shapes = [(200, 80), (201, 81), (150, 95), (300, 60), (250, 77), (199, 83)]
        for name, context, masked in [
            ("body", None, False),
            ("body flash-only", SDPBackend.FLASH_ATTENTION, False),
            ("body masked", None, True),
        ]:
            for batch, length in shapes:
                length += {"body": 0, "body flash-only": 1, "body masked": 2}[name]
                x = ids(batch, length)
                mask = torch.ones(batch, length, dtype=torch.bool, device="cuda")
                mask[0, -5:] = False

                def body(
                    x: torch.Tensor = x,
                    mask: torch.Tensor = mask,
                    masked: bool = masked,
                    context: Any = context,
                ) -> Any:
                    if context is None:
                        return stages.body(x, mask if masked else None)
                    with sdpa_kernel([context]):
                        return stages.body(x, mask if masked else None)

                first, second = first_and_second(body)
                report(name, batch, length, first, second)
        for batch, length in shapes:
            length += 3
            hidden = torch.randn(batch, length, 768, device="cuda", dtype=torch.bfloat16)
            before = triton_cache_files()
            first, second = first_and_second(
                lambda h=hidden: stages.head(h, None, method=Head.TRITON, chunk_tokens=8192)
            )
            report(
                "head triton", batch, length, first, second, f"cache files +{triton_cache_files() - before}"
            )
            first, second = first_and_second(
                lambda h=hidden: stages.head(h, None, method=Head.TORCH, chunk_tokens=8192)
            )
            report("head torch", batch, length, first, second)

    texts = make_texts(model.tokenizer, 40000, 80, seed=5)
    encoder.encode_documents(make_texts(model.tokenizer, 4096, 80, seed=6))  # starts the tokenizer pool
    for label, subset in [("e2e first pass", texts[:20000]), ("e2e same texts", texts[:20000])]:
        torch.cuda.synchronize()
        start = time.perf_counter()
        encoder.encode_documents(subset)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        print(f"{label:<18} {len(subset) / seconds:8.0f} docs/s ({seconds:.2f} s)")
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(encoder.encode_documents, texts[20000:])
    print(f"e2e first pass under cProfile: {20000 / (time.perf_counter() - start):.0f} docs/s")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(14)
    stats.print_callers("poll|acquire|synchronize")


if __name__ == "__main__":
    main()
