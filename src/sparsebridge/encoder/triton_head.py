"""A fused Triton kernel: MLM output projection with a running per-document max, no logits in memory.

``max_logits(hidden, weight, length)`` computes ``out[d, v] = max_t hidden[d*length + t] @ weight[v]``
for padded rows (``length`` rows per document, padding rows holding a copy of a real row, see
:func:`sparsebridge.encoder.sparsify.splade_max_logits`). Each program multiplies one tile of rows
by one tile of the vocabulary (a plain tiled matmul, fp32 accumulation) and, instead of storing the
tile, max-reduces it per document and merges it into ``out`` with an atomic max. The ``[tokens,
vocab]`` logits, several GB per batch, are never written.

Triton is optional: :func:`available` says whether the kernel can run (CUDA tensors and Triton,
or Triton's interpreter under ``TRITON_INTERPRET=1``, which is how CI checks it on a CPU).
"""

from __future__ import annotations

import os

import torch

__all__ = ["available", "max_logits"]

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - Triton ships with CUDA builds of torch
    triton = None


def available(device: torch.device) -> bool:
    """Whether the kernel can run for tensors on ``device``."""
    if triton is None:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


if triton is not None:
    # No annotations on the runtime arguments: Triton resolves them as globals when compiling.
    # Sizes are not specialised (by default Triton compiles a variant for multiples of 16, ~1-4 s
    # each on an H100, bench/results/gpu-h100-shapes.log): only DOCUMENTS_PER_TILE makes variants.
    @triton.jit(do_not_specialize=["rows", "vocab", "length"])  # type: ignore[untyped-decorator]
    def _max_logits_kernel(  # type: ignore[no-untyped-def]
        hidden_ptr,
        weight_ptr,
        out_ptr,
        rows,
        vocab,
        length,
        WIDTH: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        GROUP_M: tl.constexpr,
        DOCUMENTS_PER_TILE: tl.constexpr,
    ):
        # Grouped launch order: GROUP_M row tiles sweep the vocabulary together, so their hidden
        # tiles and the weight tiles stay in L2.
        pid = tl.program_id(0)
        tiles_m = tl.cdiv(rows, BLOCK_M)
        tiles_n = tl.cdiv(vocab, BLOCK_N)
        per_group = GROUP_M * tiles_n
        first_m = (pid // per_group) * GROUP_M
        group_m = tl.minimum(tiles_m - first_m, GROUP_M)
        pid_m = first_m + (pid % per_group) % group_m
        pid_n = (pid % per_group) // group_m
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_k = tl.arange(0, BLOCK_K)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k in range(0, WIDTH, BLOCK_K):  # WIDTH is a compile-time constant: a static loop
            a = tl.load(
                hidden_ptr + offs_m[:, None] * WIDTH + (k + offs_k)[None, :],
                mask=(offs_m[:, None] < rows) & ((k + offs_k)[None, :] < WIDTH),
                other=0.0,
            )
            b = tl.load(
                weight_ptr + offs_n[None, :] * WIDTH + (k + offs_k)[:, None],
                mask=(offs_n[None, :] < vocab) & ((k + offs_k)[:, None] < WIDTH),
                other=0.0,
            )
            acc = tl.dot(a, b, acc)
        documents = offs_m // length
        first = (pid_m * BLOCK_M) // length
        last = (tl.minimum(pid_m * BLOCK_M + BLOCK_M, rows) - 1) // length
        # A tile touches at most DOCUMENTS_PER_TILE documents (a compile-time bound, so the loop
        # is unrolled); documents past the tile's last are masked out.
        for i in tl.static_range(DOCUMENTS_PER_TILE):
            document = first + i
            in_document = (documents == document) & (offs_m < rows)
            best = tl.max(tl.where(in_document[:, None], acc, float("-inf")), axis=0)
            keep = (offs_n < vocab) & (document <= last)
            tl.atomic_max(out_ptr + document * vocab + offs_n, best, mask=keep)


def max_logits(hidden: torch.Tensor, weight: torch.Tensor, length: int) -> torch.Tensor:
    """``[rows / length, V]`` float32 maxima of ``hidden [rows, H] @ weight.T`` over each ``length`` rows."""
    if triton is None:
        raise RuntimeError("Triton is not installed")
    rows, width = hidden.shape
    if rows % length or weight.shape[1] != width:
        raise ValueError("hidden must be [documents * length, H] and weight [V, H]")
    hidden = hidden.contiguous()
    weight = weight.contiguous()
    vocab = weight.shape[0]
    out = torch.full((rows // length, vocab), float("-inf"), dtype=torch.float32, device=hidden.device)
    block_m, block_n, block_k = (128, 128, 64) if hidden.is_cuda else (32, 32, 32)
    grid = (triton.cdiv(rows, block_m) * triton.cdiv(vocab, block_n),)
    _max_logits_kernel[grid](
        hidden,
        weight,
        out,
        rows,
        vocab,
        length,
        WIDTH=width,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        BLOCK_K=block_k,
        GROUP_M=8,
        # Rounded up to a power of two: fewer compiled variants across batch lengths.
        DOCUMENTS_PER_TILE=triton.next_power_of_2((block_m - 2) // length + 2),
        **({"num_warps": 8, "num_stages": 3} if hidden.is_cuda else {}),
    )
    return out
