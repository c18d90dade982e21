"""One run for both ingest engines: option groups, the run's counters and checks, the run dir's name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sparsebridge.backends import MemoryBackend
from sparsebridge.errors import DeadLetterLimitError, InputError
from sparsebridge.eval.runner import _Tee
from sparsebridge.ingest import PipelineOptions, Pruning, RunOptions, Sink, ingest
from sparsebridge.ingest.checkpoint import Checkpoint, DeadLetter
from sparsebridge.ingest.options import grouped
from sparsebridge.ingest.run import Run, Tally, optimize_target, run_dir_for


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RunOptions(max_dead_letter_fraction=1.5), "max_dead_letter_fraction"),
        (lambda: RunOptions(run_number=0), "run_number"),
        (lambda: RunOptions(run_number=True), "run_number"),
        (lambda: RunOptions(resume=True), "resume needs a run directory"),
        (lambda: PipelineOptions(writers=0), "positive"),
        (lambda: PipelineOptions(batch_size=-1), "positive"),
        (lambda: Pruning(top_k=0), "top_k"),
        (lambda: Pruning(min_weight=-1.0), "min_weight"),
    ],
)
def test_an_option_group_refuses_a_bad_value_when_it_is_made(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_a_keyword_replaces_the_field_of_its_group_and_an_unknown_one_is_refused() -> None:
    run = grouped(RunOptions(run_number=3), {"resume": False, "writers": 4, "run_dir": "r"})
    assert run == RunOptions(run_dir=Path("r"), run_number=3)
    assert grouped(PipelineOptions(), {"writers": 4}).writers == 4
    with pytest.raises(TypeError, match="wrters"):
        ingest([], encoder=None, backend=MemoryBackend(), wrters=4)  # type: ignore[arg-type, call-arg]
    with pytest.raises(ValueError, match="max_dead_letter_fraction"):  # validated again once replaced
        grouped(RunOptions(), {"max_dead_letter_fraction": 2.0})


def _letter(position: int, kind: str = "empty_text") -> DeadLetter:
    return DeadLetter(position, f"d{position}", None, kind, "why")


def test_the_run_counts_checks_and_saves_in_one_place(tmp_path: Path) -> None:
    options = RunOptions(run_dir=tmp_path, max_dead_letter_fraction=0.1)
    with Run.open(options, source="", target="memory:", writers=1) as run:
        run.count(Tally(read=10, written=8, retries=3, batches=1), [_letter(1), _letter(2)], position=10)
        run.count(Tally(written=5, stale=1), position=16, this_run=False)  # another driver's work
        assert (run.stats.written, run.stats.retries, run.stats.dead_lettered) == (8, 3, 2)
        assert (run.checkpoint.written, run.checkpoint.stale, run.checkpoint.position) == (13, 1, 16)
        run.check_fraction(final=False)  # under 1,000 items: not yet
        with pytest.raises(DeadLetterLimitError, match=r"2 of 16 items .*\(empty text: 2\).* fraction 0.1"):
            run.finish(None, elapsed_s=1.0)
    saved = Checkpoint.load(tmp_path)
    assert saved is not None and not saved.done and saved.dead_lettered == 2
    letters = (tmp_path / "dead_letter.jsonl").read_text().splitlines()
    assert [json.loads(line)["position"] for line in letters] == [1, 2]
    assert saved.dead_letter_bytes == (tmp_path / "dead_letter.jsonl").stat().st_size


def test_a_restarted_run_counts_from_zero_and_rewrites_its_dead_letters(tmp_path: Path) -> None:
    with Run.open(RunOptions(run_dir=tmp_path), source="", target="memory:", writers=1) as run:
        run.count(Tally(read=3, written=2), [_letter(0)], position=3)
        run.save()
        run.restart(skipped=3)
        run.count(Tally(read=3, written=3), position=3)
        stats = run.finish(None, elapsed_s=1.0)
    assert (stats.written, stats.dead_lettered, stats.skipped, stats.position) == (3, 0, 3, 3)
    assert (tmp_path / "dead_letter.jsonl").read_text() == ""
    saved = Checkpoint.load(tmp_path)
    assert saved is not None and saved.done and (saved.written, saved.dead_letter_bytes) == (3, 0)


def test_an_empty_input_is_refused_after_the_checkpoint_is_saved(tmp_path: Path) -> None:
    empty = pytest.raises(InputError, match="no documents")
    with Run.open(RunOptions(run_dir=tmp_path), source="", target="memory:", writers=1) as run, empty:
        run.finish(None, elapsed_s=0.1)
    assert Checkpoint.load(tmp_path) is not None


def test_the_run_dir_is_named_after_the_input_and_the_target(tmp_path: Path) -> None:
    docs = tmp_path / "docs.jsonl"
    first = run_dir_for(docs, "memory://")
    assert first == run_dir_for(docs, "memory://")
    assert first.parent == Path(".sparsebridge/runs") and first.name.startswith("docs-")
    assert run_dir_for(docs, "qdrant+edge://x/docs") != first
    assert run_dir_for(tmp_path / "other.jsonl", "memory://") != first


class _Compactable:
    def __init__(self, changed: bool) -> None:
        self.changed = changed

    def optimize(self) -> bool:
        return self.changed


def test_only_a_target_that_declares_optimize_is_optimized() -> None:
    assert optimize_target(MemoryBackend()) is None
    done = optimize_target(_Compactable(True))
    assert done is not None and done.changed and done.summary().startswith("optimized")
    already = optimize_target(_Compactable(False))
    assert already is not None and "already optimal" in already.summary()


def test_the_eval_tee_is_a_sink_with_nothing_but_the_write_side() -> None:
    tee = _Tee(MemoryBackend(), MemoryBackend())
    assert isinstance(tee, Sink) and tee.name == "memory"
    assert not any(hasattr(tee, name) for name in ("search", "delete", "count", "close"))
