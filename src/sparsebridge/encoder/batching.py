"""Length-sorted, token-budget batching and vectorised padding (pure host-side functions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["TokenizedCorpus", "plan_batches"]


def plan_batches(
    lengths: Sequence[int] | npt.NDArray[np.integer],
    *,
    token_budget: int,
    max_batch_size: int,
) -> list[npt.NDArray[np.int64]]:
    """Group positions into batches, longest first, so that ``count * longest <= token_budget``.

    A batch always holds at least one item, so an item longer than the budget gets a batch of its own.
    Returns arrays of positions into ``lengths``; their concatenation is a permutation of all positions.

    Example:
        >>> [b.tolist() for b in plan_batches([3, 10, 4, 9], token_budget=20, max_batch_size=8)]
        [[1, 3], [2, 0]]
    """
    if token_budget <= 0 or max_batch_size <= 0:
        raise ValueError("token_budget and max_batch_size must be positive")
    lengths_array = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths_array, kind="stable")
    batches: list[npt.NDArray[np.int64]] = []
    start = 0
    while start < order.size:
        longest = max(int(lengths_array[order[start]]), 1)
        size = max(1, min(max_batch_size, token_budget // longest, order.size - start))
        batches.append(order[start : start + size])
        start += size
    return batches


@dataclass(frozen=True)
class TokenizedCorpus:
    """Token ids of many texts, stored flat: ``ids[offsets[i] : offsets[i] + lengths[i]]`` is text ``i``."""

    ids: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    lengths: npt.NDArray[np.int64]

    @classmethod
    def from_lists(cls, token_ids: Sequence[Sequence[int]]) -> TokenizedCorpus:
        lengths = np.fromiter((len(t) for t in token_ids), dtype=np.int64, count=len(token_ids))
        offsets = np.zeros(len(token_ids), dtype=np.int64)
        if len(token_ids) > 1:
            np.cumsum(lengths[:-1], out=offsets[1:])
        flat = np.fromiter(
            (token for text in token_ids for token in text), dtype=np.int64, count=int(lengths.sum())
        )
        return cls(flat, offsets, lengths)

    def padded(
        self, positions: npt.NDArray[np.int64], pad_id: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """The batch ``positions`` as ``(input_ids [B, L], attention_mask [B, L])``, right-padded."""
        lengths = self.lengths[positions]
        width = int(lengths.max()) if lengths.size else 0
        columns = np.arange(width, dtype=np.int64)
        mask = columns[None, :] < lengths[:, None]
        gather = np.where(mask, self.offsets[positions][:, None] + columns[None, :], 0)
        input_ids = np.where(mask, self.ids[gather] if self.ids.size else 0, pad_id)
        return input_ids, mask
