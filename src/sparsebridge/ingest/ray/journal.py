"""The Ray engine's journal: one line per written batch, the record of what a run has done.

``RUN_DIR/ray/*.jsonl`` holds one file per writer actor and driver session. A writer appends a
line (the batch's keys, its counters, its dead letters) and fsyncs it after the engine
acknowledged the batch. A resume skips every journaled key; at the end the driver counts the
whole journal into the run (:meth:`Journal.count_into`), which writes the dead-letter file and the
checkpoint as the threaded pipeline does.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsebridge.ingest.checkpoint import DeadLetter
from sparsebridge.ingest.ray.work import Work
from sparsebridge.ingest.run import Run, Tally
from sparsebridge.types import WriteStats

__all__ = ["JOURNAL_DIR", "Journal", "JournalFile"]

JOURNAL_DIR = "ray"
"""The journal's folder inside the run directory."""


class JournalFile:
    """One writer actor's journal file: a line per written batch, fsynced."""

    def __init__(self, folder: Path, session: str, index: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.session = session
        self._handle = (folder / f"{session}-{index}.jsonl").open("a", encoding="utf-8")

    def append(self, work: Work, written: WriteStats) -> None:
        """Journal a batch the engine acknowledged."""
        entry = {
            "session": self.session,
            "at": time.time(),
            "keys": work.keys(),
            "written": written.written,
            "stale": written.stale,
            "retries": written.retries,
            "truncated": work.batch.truncated,
            "letters": [(key, letter.to_json()) for key, letter in work.letters()],
        }
        self._handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


@dataclass
class Journal:
    """Every journaled batch of a run: the keys done, the dead letters, the counters per session."""

    keys: set[str] = field(default_factory=set)
    letters: dict[str, DeadLetter] = field(default_factory=dict)
    sessions: dict[str, Tally] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path) -> Journal:
        """Read every journal file in ``folder`` (none: an empty journal)."""
        journal = cls()
        for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:  # a line cut by a kill: its batch was not journaled
                    continue
                journal._add(entry)
        return journal

    def _add(self, entry: dict[str, Any]) -> None:
        new = [k for k in entry["keys"] if k not in self.keys]
        self.keys.update(new)
        for key, letter in entry["letters"]:
            self.letters[key] = DeadLetter(**letter)
        before = self.sessions.get(entry["session"], Tally())
        self.sessions[entry["session"]] = Tally(
            read=before.read + len(new),
            written=before.written + int(entry["written"]),
            stale=before.stale + int(entry["stale"]),
            truncated=before.truncated + int(entry["truncated"]),
            retries=before.retries + int(entry["retries"]),
            batches=before.batches + 1,
        )

    def count_into(self, run: Run, session: str) -> None:
        """Count every journaled item into ``run`` (its stats take ``session``'s counters).

        The dead letters go in input order (a Dataset's, without positions, by id), as
        :func:`~sparsebridge.ingest.ingest` writes them.
        """
        for name, tally in self.sessions.items():
            run.count(tally, this_run=name == session)
        letters = sorted(self.letters.values(), key=lambda d: (d.position, d.id or ""))
        run.count(Tally(), letters, position=len(self.keys))
