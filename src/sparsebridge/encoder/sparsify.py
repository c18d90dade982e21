"""SPLADE pooling on the device: the MLM output projection, max-pooled without materialising logits."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import cast

import torch

__all__ = [
    "QuantizedProjection",
    "onednn_linear",
    "onednn_pack",
    "pack_vocabulary_tiles",
    "pad_with_first_token",
    "splade_activation",
    "splade_max_logits",
    "splade_max_logits_screened",
    "splade_max_logits_tiled",
]


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


def splade_max_logits_tiled(
    hidden: torch.Tensor,
    mask: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    tile_tokens: int = 512,
    tile_vocab: int = 2048,
    packed_tiles: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """:func:`splade_max_logits` one cache-sized tile of logits at a time: no ``[tokens, vocab]`` buffer.

    The logits are computed transposed, ``weight[tile] @ hidden[rows].T`` (``[tile_vocab, rows *
    L]``, about ``tile_tokens`` whole rows of tokens), so each row's max over its ``L`` tokens is a
    reduction over contiguous memory, done while the tile is still in cache, and only the pooled
    ``[rows, tile_vocab]`` block is written out. The arithmetic is the same float32 matmul as
    :func:`splade_max_logits`; what it saves is writing and re-reading the full logits (several GB
    for a batch of documents), which on a CPU without int8 dot products is most of the head's time.
    Padding is handled as in :func:`splade_max_logits`.

    ``packed_tiles`` (from :func:`pack_vocabulary_tiles` with the same ``tile_vocab``) multiplies
    each tile through oneDNN instead, ``tokens @ tile.T``, pooled over each row's ``L`` tokens.
    """
    hidden = pad_with_first_token(hidden, mask)
    batch, length, width = hidden.shape
    vocab = weight.shape[0]
    flat = hidden.reshape(-1, width)
    rows = max(1, min(batch, tile_tokens // max(length, 1)))
    tile_vocab = min(tile_vocab, vocab)
    buffer = hidden.new_empty(tile_vocab * rows * length)
    pooled = hidden.new_empty(batch, vocab)
    for start in range(0, batch, rows):
        stop = min(start + rows, batch)
        tokens = flat[start * length : stop * length]
        if packed_tiles is not None:
            column = 0
            for tile in packed_tiles:
                logits = onednn_linear(tokens, tile, None)
                pooled[start:stop, column : column + tile.shape[0]] = logits.view(
                    stop - start, length, -1
                ).amax(dim=1)
                column += tile.shape[0]
            if column != vocab:
                raise ValueError(f"packed tiles cover {column} of {vocab} vocabulary rows")
            continue
        for column in range(0, vocab, tile_vocab):
            block = weight[column : column + tile_vocab]
            logits = buffer[: len(block) * len(tokens)].view(len(block), len(tokens))
            torch.matmul(block, tokens.t(), out=logits)
            pooled[start:stop, column : column + len(block)] = (
                logits.view(len(block), -1, length).amax(dim=2).t()
            )
    return pooled + bias if bias is not None else pooled


def onednn_pack(weight: torch.Tensor) -> torch.Tensor:
    """A float32 ``[out, in]`` linear weight packed once in oneDNN's layout for this CPU (a copy)."""
    with torch.inference_mode():
        return cast(torch.Tensor, torch.ops.mkldnn._reorder_linear_weight(weight.detach(), batch_size=None))


def onednn_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ weight.T + bias`` through oneDNN's float32 inner product, ``packed`` from :func:`onednn_pack`."""
    return cast(torch.Tensor, torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], ""))


def pack_vocabulary_tiles(weight: torch.Tensor, *, tile_vocab: int = 2048) -> list[torch.Tensor]:
    """The projection's rows in tiles of ``tile_vocab``, each packed by :func:`onednn_pack`, for
    :func:`splade_max_logits_tiled`."""
    return [
        onednn_pack(weight[column : column + tile_vocab]) for column in range(0, weight.shape[0], tile_vocab)
    ]


# Float32 rounding (the centre folded into the bias, oneDNN's epilogue, the float32 logits the
# screen stands in for) is a few units of 2**-24 of these magnitudes; 2**-12 of them covers it.
_FLOAT_SLACK = 2.0**-12


class QuantizedProjection:
    """The MLM output projection as int8 rows for oneDNN, with the norms the screen's error bound needs.

    Row ``v`` is stored as ``round(w_v / s_v)`` with ``s_v = max|w_v| / 127``. ``error_terms``
    ``[3, V]`` holds, per row, its length ``||w_v||``, its distance to its int8 value ``||d_v||`` and
    the float32 slack on its length: what a document's largest ``||e||``, ``||x^||`` and ``||x||``
    multiply in the screen's bound. ``levels`` is the largest uint8 activation the screen may
    pass (see :meth:`create`). Build it with :meth:`create`, which returns None where oneDNN's int8
    matmul is missing.
    """

    def __init__(self, weight: torch.Tensor, *, levels: int = 255) -> None:
        self.levels = levels
        weight = weight.detach().float()
        self.scales = weight.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127
        rows = torch.round(weight / self.scales[:, None]).clamp_(-127, 127).to(torch.int8)
        self.packed = torch.ops.onednn.qlinear_prepack(rows, None)
        self.zero_points = torch.zeros(len(weight), dtype=torch.int32)
        norms = torch.linalg.vector_norm(weight, dim=1)
        rounding = torch.linalg.vector_norm(weight - rows * self.scales[:, None], dim=1)
        self.error_terms = torch.stack([norms, rounding, _FLOAT_SLACK * norms])

    @classmethod
    def create(cls, weight: torch.Tensor) -> QuantizedProjection | None:
        """The projection for a float32 CPU weight, or None where the int8 screen does not apply.

        It needs oneDNN's int8 matmul on an x86 CPU with at least AVX2. With VNNI (AVX512-VNNI,
        AVX-VNNI or AMX) that oneDNN is not capped below, u8 x s8 products are summed exactly in
        32 bits: activations use all 8 bits. Without VNNI, oneDNN sums each pair of products in
        saturating 16 bits, which would void the bound for 8-bit activations (2 x 255 x 127 >
        32767); 7-bit activations (``levels`` 127: 2 x 127 x 127 <= 32767) never saturate, at
        twice the rounding error, which the bound includes.
        """
        levels = _activation_levels()
        if weight.device.type != "cpu" or weight.dtype != torch.float32 or levels is None:
            return None
        onednn = torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
        if not onednn or not hasattr(torch.ops.onednn, "qlinear_pointwise"):
            return None
        return cls(weight, levels=levels)

    def max_logits(
        self,
        tokens: torch.Tensor,
        lengths: list[int],
        bias: torch.Tensor,
        out: torch.Tensor,
        *,
        scale: float,
        zero_point: int,
        output_scale: float,
        chunk_tokens: int,
    ) -> None:
        """``out[d] = max`` over document ``d``'s rows of ``tokens`` (uint8) of the requantised logits.

        ``tokens`` holds the documents' rows back to back, ``lengths`` how many each has. The
        logits ``(tokens - zero_point) * scale @ w.T + bias`` are rounded to uint8 with
        ``output_scale`` around zero point 128, ``chunk_tokens`` rows at a time; a document may
        span two chunks. The last chunk is padded to a multiple of 64 rows, so the matmul sees few
        shapes: oneDNN keeps a primitive per shape, and logits buffers of many sizes fragment the
        heap (+650 MiB RSS over 30k documents, measured, when each chunk had its own size).
        """
        total = tokens.shape[0]
        document, document_start = 0, 0
        for start in range(0, total, chunk_tokens):
            stop = min(start + chunk_tokens, total)
            rows = tokens[start:stop]
            if (stop - start) % 64:
                padding = rows.new_full((64 - (stop - start) % 64, rows.shape[1]), zero_point)
                rows = torch.cat([rows, padding])
            logits = torch.ops.onednn.qlinear_pointwise(
                rows, scale, zero_point, self.packed, self.scales, self.zero_points, bias,
                output_scale, 128, torch.uint8, "none", [], "",
            )  # fmt: skip
            while document < len(lengths) and document_start < stop:
                document_end = document_start + lengths[document]
                part = logits[max(document_start, start) - start : min(document_end, stop) - start]
                if document_start >= start:
                    torch.amax(part, dim=0, out=out[document])
                else:  # the document began in the previous chunk
                    torch.maximum(out[document], part.amax(dim=0), out=out[document])
                if document_end > stop:
                    break
                document, document_start = document + 1, document_end


def splade_max_logits_screened(
    hidden: torch.Tensor,
    mask: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    projection: QuantizedProjection,
    *,
    chunk_tokens: int,
) -> torch.Tensor:
    """:func:`splade_max_logits` in float32, exact where it matters, for about a quarter of the CPU time.

    An int8 pass (oneDNN; with VNNI about five times the float32 matmul rate) screens every
    (document, vocabulary) pair, then only the pairs that can be positive, a few percent, are
    recomputed in float32 from the gathered weight rows. Every other entry is certainly <= 0, so
    it is returned as ``-inf`` and activates to exactly 0, as the exact logit would.

    The screen works on real tokens only, centred on their mean (BERT-like hidden states share a
    large common component; its dot products go into the bias exactly, in float32). With ``x``
    rounded to ``x^ = x - e`` and ``w`` to ``w^ = w - d``, ``|x.w - x^.w^| = |e.w + x^.d| <=
    ||e|| ||w|| + ||x^|| ||d||``, each norm known exactly; a document's bound takes its tokens'
    largest ``||e||`` and ``||x^||``. The int8 logits are requantised to uint8 around zero over a
    range twice that bound, so values below the range are certainly negative and values above it
    are candidates; the uint8 rounding adds two steps.
    """
    rows, length, width = hidden.shape
    if mask is None:
        lengths = [length] * rows
        tokens = hidden.reshape(-1, width)
    else:
        lengths = mask.sum(dim=1).tolist()
        tokens = hidden[mask]  # the real tokens, row after row
    center = tokens.mean(dim=0)
    centered = tokens - center
    bias = torch.zeros(weight.shape[0]) if bias is None else bias.float()
    shifted_bias = torch.addmv(bias, weight, center)

    low, high = (float(v) for v in centered.aminmax())
    scale = max(high - low, torch.finfo(torch.float32).tiny) / projection.levels
    zero_point = round(-low / scale)
    quantized = torch.round(centered / scale + zero_point).clamp_(0, projection.levels).to(torch.uint8)
    rounded = (quantized.float() - zero_point).mul_(scale)

    norms = torch.stack(
        [
            torch.linalg.vector_norm(centered - rounded, dim=1),  # ||e||
            torch.linalg.vector_norm(rounded, dim=1),  # ||x^||
            torch.linalg.vector_norm(centered, dim=1) + torch.linalg.vector_norm(center),  # float rounding
        ]
    )
    document = torch.repeat_interleave(torch.arange(rows), torch.tensor(lengths))
    largest = torch.zeros(3, rows).scatter_reduce_(1, document.expand(3, -1), norms, "amax")
    bound = torch.addmm((_FLOAT_SLACK * bias.abs())[None, :], largest.t(), projection.error_terms)
    reach = 2 * float(bound.max()) + _FLOAT_SLACK  # the uint8 range is [-reach, reach]
    output_scale = 2 * reach / 255
    pooled_q = torch.empty(rows, weight.shape[0], dtype=torch.uint8)
    projection.max_logits(
        quantized, lengths, shifted_bias, pooled_q,
        scale=scale, zero_point=zero_point, output_scale=output_scale, chunk_tokens=chunk_tokens,
    )  # fmt: skip
    candidates = (pooled_q.float() - 128).mul_(output_scale).add_(bound).add_(2 * output_scale) > 0
    return _exact_where(candidates, tokens, lengths, weight, bias)


def _exact_where(
    candidates: torch.Tensor,
    tokens: torch.Tensor,
    lengths: list[int],
    weight: torch.Tensor,
    bias: torch.Tensor,
) -> torch.Tensor:
    """Exact float32 max logits at the ``candidates`` ``[B, V]``, ``-inf`` everywhere else.

    ``tokens`` holds each row's hidden states back to back, ``lengths[b]`` of them for row ``b``.
    One small matmul per row, over its own candidates' weight rows only.
    """
    rows, columns = candidates.nonzero(as_tuple=True)
    counts = candidates.sum(dim=1).tolist()
    values = torch.empty(len(columns))
    start = offset = 0
    for length, count in zip(lengths, counts, strict=True):
        kept = weight.index_select(0, columns[offset : offset + count])
        torch.amax(tokens[start : start + length] @ kept.t(), dim=0, out=values[offset : offset + count])
        start, offset = start + length, offset + count
    values += bias[columns]
    return torch.full(candidates.shape, float("-inf")).index_put_((rows, columns), values)


# oneDNN's ISA caps (ONEDNN_MAX_CPU_ISA) that leave its int8 kernels without VNNI instructions,
# and those below AVX2, under which the screen is not used at all.
_ONEDNN_ISAS_WITHOUT_VNNI = frozenset({"SSE41", "AVX", "AVX2", "AVX512_CORE"})
_ONEDNN_ISAS_BELOW_AVX2 = frozenset({"SSE41", "AVX"})
_VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def _onednn_cap() -> str:
    return (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()


def _cpu_has_vnni() -> bool:
    """True where oneDNN's int8 matmul may use VNNI: the CPU has it and oneDNN is not capped below it.

    VNNI is AVX512-VNNI, AVX-VNNI or AMX-INT8 (read from ``/proc/cpuinfo``, Linux). An ISA cap
    without VNNI (``ONEDNN_MAX_CPU_ISA=AVX2``, how an AVX2-only CPU is emulated on a newer one)
    makes oneDNN use its saturating AVX2 kernels, so it counts as no VNNI.
    """
    return _onednn_cap() not in _ONEDNN_ISAS_WITHOUT_VNNI and bool(_cpu_flags() & _VNNI_FLAGS)


def _activation_levels() -> int | None:
    """Largest uint8 activation oneDNN's int8 matmul sums exactly here: 255 with VNNI, 127 on
    AVX2 without it (see :meth:`QuantizedProjection.create`), None below AVX2 or off x86."""
    if "avx2" not in _cpu_flags() or _onednn_cap() in _ONEDNN_ISAS_BELOW_AVX2:
        return None
    return 255 if _cpu_has_vnni() else 127


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            return frozenset(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        return frozenset()


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
    over a middle dimension is not vectorised there (on a 2-core EPYC, ``[8, 122, 30522]``: 1.8x
    slower in float32, 3.7x in bfloat16).
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
