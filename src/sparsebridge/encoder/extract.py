"""Sparse extraction: pruning on the device, then one copy of indices and values to the host."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from sparsebridge.errors import ModelOutputError
from sparsebridge.types import SparseVector

__all__ = ["SparseExtractor", "non_finite_message", "rows_to_vectors", "to_sparse_vectors"]


def non_finite_message(model: str, rows: int | None = None, batch: int | None = None) -> str:
    """The message of a :class:`~sparsebridge.errors.ModelOutputError`: where, and the likely causes."""
    where = f" for {rows} of {batch} texts of a batch" if rows is not None else ""
    return (
        f"model {model!r} produced NaN or Inf{where}. Likely causes: weights or buffers that were not "
        "loaded (a custom-code model's constructor-computed buffers, such as a RoPE table, under "
        "transformers 5: load the model with Encoder.load, which restores them), or an overflow in "
        "float16/bfloat16 (try float32)"
    )


def to_sparse_vectors(dense: torch.Tensor, *, top_k: int | None, min_weight: float) -> list[SparseVector]:
    """Prune ``[B, V]`` activations on the device and return one :class:`SparseVector` per row.

    Top-k uses ``torch.topk`` exactly as sentence-transformers' ``max_active_dims`` does; then every
    weight ``<= min_weight`` (and so every zero) is dropped. One device-to-host copy per batch.
    """
    dense = dense.float()
    if top_k is not None and top_k < dense.shape[1]:
        values, indices = dense.topk(top_k, dim=1)
        dense = torch.zeros_like(dense).scatter_(1, indices, values)
    keep = dense > min_weight
    counts = keep.sum(dim=1)
    columns = keep.nonzero()[:, 1].to(torch.int32)
    values = dense[keep]
    host_columns = columns.cpu().numpy()
    host_values = values.cpu().numpy().astype(np.float32, copy=False)
    bounds = np.cumsum(counts.cpu().numpy())[:-1]
    return [
        SparseVector._trusted(idx, val)
        for idx, val in zip(np.split(host_columns, bounds), np.split(host_values, bounds), strict=True)
    ]


class SparseExtractor:
    """Extraction that never stalls the device queue (CUDA), or runs at once (CPU).

    Each batch keeps a fixed number of entries per row, ``top_k`` or ``capacity``, chosen with
    ``torch.topk`` and sorted by index on the device. On CUDA they are copied into pinned host
    memory asynchronously and read only when a later batch has been queued, so the host never
    waits for the GPU in between; the host only slices each row.
    A row with more than ``capacity`` weights above ``min_weight`` is re-extracted exactly (rare:
    SPLADE documents have ~20-400 non-zeros). A batch with a NaN or Inf weight raises
    :class:`~sparsebridge.errors.ModelOutputError` naming ``model``.
    """

    def __init__(
        self,
        *,
        device: torch.device,
        top_k: int | None,
        min_weight: float,
        capacity: int = 1024,
        lag: int = 2,
        model: str = "the model",
    ) -> None:
        self.device = device
        self.model = model
        self.top_k = top_k
        self.min_weight = min_weight
        self.capacity = capacity
        self.lag = lag
        self._pending: deque[tuple[npt.NDArray[np.int64], torch.Tensor, tuple[torch.Tensor, ...], Any]] = (
            deque()
        )

    def submit(
        self, positions: npt.NDArray[np.int64], dense: torch.Tensor
    ) -> Iterator[tuple[int, SparseVector]]:
        """Queue a batch; yields ``(position, vector)`` of batches that are complete by now."""
        candidates = _candidates(dense, min(self.top_k or self.capacity, dense.shape[1]), self.min_weight)
        event = None
        if self.device.type == "cuda":
            candidates = tuple(
                torch.empty(t.shape, dtype=t.dtype, pin_memory=True).copy_(t, non_blocking=True)
                for t in candidates
            )
            event = torch.cuda.Event()  # type: ignore[no-untyped-call]
            event.record()
        self._pending.append((positions, dense, candidates, event))
        while len(self._pending) > (self.lag if event is not None else 0):
            yield from self._collect()

    def drain(self) -> Iterator[tuple[int, SparseVector]]:
        """Yield everything still pending."""
        while self._pending:
            yield from self._collect()

    def _collect(self) -> Iterator[tuple[int, SparseVector]]:
        positions, dense, (values_t, indices_t, counts_t), event = self._pending.popleft()
        if event is not None:
            event.synchronize()
        kept, above, non_finite = counts_t.numpy()
        if non_finite.any():
            bad = int(np.count_nonzero(non_finite))
            raise ModelOutputError(non_finite_message(self.model, bad, len(non_finite)), self.model)
        vectors = rows_to_vectors(values_t.numpy(), indices_t.numpy(), kept)
        if self.top_k is None:  # rows with more than `capacity` weights: extracted again, exactly
            for row in np.flatnonzero(above > kept).tolist():
                [vectors[row]] = to_sparse_vectors(
                    dense[row : row + 1], top_k=None, min_weight=self.min_weight
                )
        yield from zip(positions.tolist(), vectors, strict=True)


def rows_to_vectors(
    values: npt.NDArray[np.float32], indices: npt.NDArray[np.int32], counts: npt.NDArray[np.int64]
) -> list[SparseVector]:
    """One vector per row from flat ``values``/``indices`` holding the rows' entries back to back.

    Row ``r`` has ``counts[r]`` entries (sorted by index, weights positive). The used part is copied
    once, so the vectors share one compact buffer, not the caller's.
    """
    ends = np.cumsum(counts)
    used = int(ends[-1]) if ends.size else 0
    flat_indices, flat_values = indices[:used].copy(), values[:used].copy()
    bounds = ends.tolist()
    return [
        SparseVector._trusted(flat_indices[start:end], flat_values[start:end])
        for start, end in zip([0, *bounds[:-1]], bounds, strict=True)
    ]


def _candidates(dense: torch.Tensor, keep: int, min_weight: float) -> tuple[torch.Tensor, ...]:
    """On the device: each row's ``keep`` largest weights ``> min_weight``, sorted by index, packed.

    Returns flat values and int32 indices ``[B * keep + 1]`` holding the rows' kept entries back to
    back (the last slot takes the dropped ones), and counts ``[3, B]``: how many of a row's
    candidates are kept, how many weights of the row are ``> min_weight`` in all (more than kept
    means the row overflowed ``keep``), and how many are NaN or Inf. Fixed shapes throughout: no
    device-to-host sync.
    """
    rows = dense.shape[0]
    values, indices = dense.float().topk(keep, dim=1, sorted=False)
    kept = values > min_weight
    indices = torch.where(kept, indices.to(torch.int32), torch.iinfo(torch.int32).max)
    indices, order = indices.sort(dim=1)  # kept entries first in each row
    values = values.gather(1, order)
    kept_counts = kept.sum(dim=1)
    columns = torch.arange(keep, device=dense.device)
    offsets = kept_counts.cumsum(0) - kept_counts
    slot = torch.where(columns < kept_counts[:, None], offsets[:, None] + columns, rows * keep).flatten()
    flat_values = values.new_zeros(rows * keep + 1).scatter_(0, slot, values.flatten())
    flat_indices = indices.new_zeros(rows * keep + 1).scatter_(0, slot, indices.flatten())
    counts = [kept_counts, (dense > min_weight).sum(dim=1), (~torch.isfinite(dense)).sum(dim=1)]
    return flat_values, flat_indices, torch.stack(counts)
