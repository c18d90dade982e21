"""What a caller sets for an ingest: three small frozen option groups, validated when made.

- :class:`RunOptions`: the run itself (its directory, resume, run number, the dead-letter limit,
  the model check), the same for the threaded pipeline and the Ray engine;
- :class:`PipelineOptions`: how the threaded pipeline is laid out (batch size, writers, queues,
  signals, the GIL switch interval); the Ray engine has :class:`~sparsebridge.ingest.ray.RayOptions`;
- :class:`Pruning`: which weights each vector keeps.

:func:`~sparsebridge.ingest.ingest` and :func:`~sparsebridge.ingest.ray.ray_ingest` take the groups
(``run=RunOptions(...)``) or, for short, any field as a keyword of its own (``run_dir=...``):
:func:`grouped` folds such keywords into their group.

Example:
    >>> RunOptions(run_dir=Path("runs/docs"), resume=True).resume
    True
    >>> grouped(RunOptions(), {"run_number": 7}).run_number
    7
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, TypeVar

from sparsebridge.types import check_pruning

__all__ = [
    "SHORT_SWITCH_INTERVAL_S",
    "PipelineOptions",
    "PipelineShortcuts",
    "Pruning",
    "PruningShortcuts",
    "RunOptions",
    "RunShortcuts",
    "grouped",
    "unknown_keywords",
]

SHORT_SWITCH_INTERVAL_S = 0.0005
"""The GIL switch interval a run with ``short_gil_switches=True`` sets (at most)."""


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """The run: where it keeps its state and when it stops.

    Args:
        run_dir: Where the checkpoint and the dead-letter file live (none: dead letters are kept
            in ``IngestStats.dead_letters`` only, and the run cannot be resumed). The run holds
            its lock throughout (:class:`~sparsebridge.ingest.checkpoint.RunDirLock`).
        resume: Continue the run whose checkpoint is in ``run_dir``, with its run number.
        run_number: The version every write carries (default: a new run takes the larger of the
            time in milliseconds and the previous run number in ``run_dir`` plus one).
        max_dead_letter_fraction: Stop when more than this fraction of items is dead-lettered
            (checked from 1,000 items on, and at the end).
        allow_model_mismatch: Write even when the target records another model
            (:mod:`~sparsebridge.backends.model_identity`); by default that is refused.
    """

    run_dir: Path | None = None
    resume: bool = False
    run_number: int | None = None
    max_dead_letter_fraction: float = 0.01
    allow_model_mismatch: bool = False

    def __post_init__(self) -> None:
        if self.run_dir is not None:
            object.__setattr__(self, "run_dir", Path(self.run_dir))
        if not 0 <= self.max_dead_letter_fraction <= 1:
            raise ValueError("max_dead_letter_fraction must be in [0, 1]")
        if self.run_number is not None and not _positive_int(self.run_number):
            raise ValueError("run_number must be a positive integer")
        if self.resume and self.run_dir is None:
            raise ValueError("resume needs a run directory")


@dataclass(frozen=True, kw_only=True)
class PipelineOptions:
    """How the threaded pipeline (:func:`~sparsebridge.ingest.ingest`) is laid out.

    Args:
        batch_size: Items per batch (encoder call and ``backend.write`` call); by default the
            encoder's ``suggested_batch_size`` (16,384 per GPU, 256 on a CPU).
        writers: Concurrent ``backend.write`` calls.
        queue_batches: Batches each queue between stages holds.
        handle_signals: On SIGINT/SIGTERM (main thread only), stop reading, finish the batches in
            flight, write the checkpoint and return with ``interrupted=True``.
        short_gil_switches: While the run is in progress, lower the interpreter's GIL switch
            interval to :data:`SHORT_SWITCH_INTERVAL_S` (0.5 ms). This is process-wide state:
            every thread of the process switches more often until the last such run ends, when
            the previous interval is restored. It lets the encoder take the GIL back quickly from
            the reader and the writers: the encoder gives the GIL up for every torch operation,
            and with the default 5 ms interval waits up to 5 ms for it while the torch threads
            idle (bench/results/ingest-cpu-2core.md). Off by default; the ``sparsebridge`` CLI,
            which owns its process, turns it on.
    """

    batch_size: int | None = None
    writers: int = 2
    queue_batches: int = 2
    handle_signals: bool = False
    short_gil_switches: bool = False

    def __post_init__(self) -> None:
        sizes = (self.batch_size or 1, self.writers, self.queue_batches)
        if not all(isinstance(n, int) and n > 0 for n in sizes):
            raise ValueError("batch_size, writers and queue_batches must be positive")


@dataclass(frozen=True, kw_only=True)
class Pruning:
    """Which weights each document vector keeps: at most ``top_k``, each above ``min_weight``."""

    top_k: int | None = None
    min_weight: float = 0.0

    def __post_init__(self) -> None:
        check_pruning(self.top_k, self.min_weight)


class RunShortcuts(TypedDict, total=False):
    """The fields of :class:`RunOptions`, as keywords of their own."""

    run_dir: Path | None
    resume: bool
    run_number: int | None
    max_dead_letter_fraction: float
    allow_model_mismatch: bool


class PipelineShortcuts(TypedDict, total=False):
    """The fields of :class:`PipelineOptions`, as keywords of their own."""

    batch_size: int | None
    writers: int
    queue_batches: int
    handle_signals: bool
    short_gil_switches: bool


class PruningShortcuts(TypedDict, total=False):
    """The fields of :class:`Pruning`, as keywords of their own."""

    top_k: int | None
    min_weight: float


_Group = TypeVar("_Group", RunOptions, PipelineOptions, Pruning)


def grouped(group: _Group, shortcuts: Mapping[str, Any]) -> _Group:
    """``group`` with the fields that ``shortcuts`` names replaced (validated again).

    Only the keywords that are fields of ``group`` are taken; the caller checks that every keyword
    it was given belongs to one of its groups.
    """
    names = {f.name for f in dataclasses.fields(group)}
    mine = {name: value for name, value in shortcuts.items() if name in names}
    return dataclasses.replace(group, **mine) if mine else group


def unknown_keywords(shortcuts: Mapping[str, Any], *groups: type[Any]) -> None:
    """Raise :class:`TypeError` for a keyword that is no field of ``groups``."""
    known = {f.name for group in groups for f in dataclasses.fields(group)}
    extra = sorted(set(shortcuts) - known)
    if extra:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(extra)}")
