"""SPLADE pooling on the device: the MLM output projection, max-pooled without materialising logits."""

from __future__ import annotations

import torch

__all__ = ["pad_with_first_token", "splade_activation", "splade_max_logits", "splade_max_logits_screened"]


def splade_max_logits(
    hidden: torch.Tensor,
    mask: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    chunk_tokens: int,
) -> torch.Tensor:
    """Max over real tokens of the MLM logits ``hidden @ weight.T + bias``, without keeping them all.

    ``hidden`` is ``[B, L, H]``, right-padded, ``mask`` ``[B, L]`` (True for real tokens; position 0
    is always real; None when nothing is padded), ``weight`` ``[V, H]``. Returns raw max logits ``[B, V]``.

    Because ``log1p(relu(x))`` is monotone, pooling raw logits and activating once on ``[B, V]``
    gives the same vector as activating every token first. Padding positions take the hidden state
    of their row's first token, so their logits repeat a real token's and cannot change the max: no
    masking pass over the logits. The bias is constant over tokens, so it is added after the max.
    The logits are computed ``chunk_tokens`` at a time, so memory stays bounded on long inputs.
    """
    hidden = pad_with_first_token(hidden, mask)
    pooled = _chunked_max(hidden, weight, chunk_tokens)
    return pooled + bias if bias is not None else pooled


# Bound on |exact - bf16| logit error, per unit of ||h|| * ||w||: inputs rounded to bf16 (2u),
# the bf16 output (u, on a value bounded by ||h|| * ||w||) and fp32 accumulation, u = 2**-8, make
# about 0.0118; 2**-6 = 0.0156 leaves a margin.
_BF16_SLACK = 2.0**-6


def splade_max_logits_screened(
    hidden: torch.Tensor,
    mask: torch.Tensor | None,
    weight: torch.Tensor,
    weight_bf16: torch.Tensor,
    weight_norms: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    chunk_tokens: int,
) -> torch.Tensor:
    """:func:`splade_max_logits` in float32, exact where it matters, for about half the CPU time.

    A bfloat16 pass (twice the float32 matmul rate on CPUs with bf16 instructions) bounds every
    max logit within ``2**-6 * max_t ||h_t|| * ||w_v||``. Only the (document, vocabulary) pairs
    that can be positive under that bound, a few percent of the vocabulary, are recomputed in
    float32 from the gathered weight rows. Every other entry is certainly <= 0, so it is returned
    as ``-inf`` and activates to exactly 0, as the exact logit would. Positive entries are exact
    float32 dot products, as in :func:`splade_max_logits`.
    """
    hidden = pad_with_first_token(hidden, mask)
    approx = _chunked_max(hidden.to(torch.bfloat16), weight_bf16, chunk_tokens).float()
    if bias is not None:
        approx += bias
    norms = torch.linalg.vector_norm(hidden, dim=2).amax(dim=1)
    candidates = approx + _BF16_SLACK * norms[:, None] * weight_norms[None, :] > 0
    width = int(candidates.sum(dim=1).max())
    pooled = torch.full_like(approx, float("-inf"))
    if width == 0:
        return pooled
    # Each row's candidates (padded with non-candidates, whose exact logits are <= 0 as well).
    columns = candidates.to(torch.uint8).topk(width, dim=1, sorted=False).indices
    exact = torch.bmm(hidden, weight[columns].transpose(1, 2)).amax(dim=1)
    if bias is not None:
        exact += bias[columns]
    return pooled.scatter_(1, columns, exact)


def pad_with_first_token(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Padding positions take their row's first hidden state: max-pooling then ignores them.

    ``mask`` None means no padding: ``hidden`` is returned as is.
    """
    if mask is None:
        return hidden
    return torch.where(mask[..., None], hidden, hidden[:, :1])


def _chunked_max(hidden: torch.Tensor, weight: torch.Tensor, chunk_tokens: int) -> torch.Tensor:
    """``max_t hidden[b, t] @ weight.T`` for every row ``b``, a few whole rows per 2-D matmul."""
    batch, length, width = hidden.shape
    rows = max(1, chunk_tokens // max(length, 1))
    buffer = torch.empty(min(rows, batch) * length, weight.shape[0], dtype=hidden.dtype, device=hidden.device)
    pooled = torch.empty(batch, weight.shape[0], dtype=hidden.dtype, device=hidden.device)
    for start in range(0, batch, rows):
        part = hidden[start : start + rows]
        flat = part.reshape(-1, width)
        logits = torch.matmul(flat, weight.t(), out=buffer[: flat.shape[0]])
        _max_over_tokens(logits.view(part.shape[0], length, -1), pooled[start : start + rows])
    return pooled


def _max_over_tokens(logits: torch.Tensor, out: torch.Tensor) -> None:
    """``out = logits.amax(dim=1)`` for ``[rows, L, V]``.

    On a CPU as ``L`` elementwise maxima over contiguous ``[rows, V]`` slices: torch's reduction
    over a middle dimension is not vectorised there (4x slower in bfloat16 on a 2-core EPYC,
    as slow as the matmul before it).
    """
    if logits.device.type != "cpu":
        torch.amax(logits, dim=1, out=out)
        return
    out.copy_(logits[:, 0])
    for position in range(1, logits.shape[1]):
        torch.maximum(out, logits[:, position], out=out)


def splade_activation(pooled: torch.Tensor, *, double_log: bool) -> torch.Tensor:
    """``log1p(relu(x))`` (twice ``log1p`` for the ``log1p_relu`` variant), in float32."""
    out = pooled.float().relu().log1p_()  # relu() copies: the caller's tensor is left alone
    return out.log1p_() if double_log else out
