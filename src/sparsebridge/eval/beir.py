"""BEIR-format datasets: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsebridge.errors import InputError
from sparsebridge.types import Document

__all__ = ["BeirDataset", "load_beir"]


@dataclass(frozen=True)
class BeirDataset:
    """A loaded BEIR dataset.

    ``corpus`` maps document ids to documents whose text is ``title`` and ``text`` joined by a
    space (the title alone, or the text alone, when the other is empty); the title is also kept in
    the metadata. ``queries`` holds only the queries that have at least one qrels row; ``qrels``
    maps query id -> document id -> graded relevance (an integer; > 0 is relevant).
    """

    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_beir(directory: str | Path, *, split: str = "test") -> BeirDataset:
    """Load ``directory`` in BEIR format; the qrels file may or may not start with a header line.

    Raises:
        InputError: A file is missing or malformed (with file and line), or a qrels row names an
            unknown query or document.
    """
    root = Path(directory)
    corpus: dict[str, Document] = {}
    for line, row in _jsonl(root / "corpus.jsonl"):
        document_id = _field(row, "_id", root / "corpus.jsonl", line)
        title, text = row.get("title") or "", row.get("text") or ""
        if not isinstance(title, str) or not isinstance(text, str):
            raise InputError("title and text must be strings", source=str(root / "corpus.jsonl"), line=line)
        joined = " ".join(part for part in (title.strip(), text.strip()) if part)
        if not joined or document_id in corpus:
            problem = "empty title and text" if not joined else f"duplicate _id {document_id!r}"
            raise InputError(problem, source=str(root / "corpus.jsonl"), line=line)
        corpus[document_id] = Document(document_id, joined, {"title": title} if title else {})
    all_queries: dict[str, str] = {}
    for line, row in _jsonl(root / "queries.jsonl"):
        query_id = _field(row, "_id", root / "queries.jsonl", line)
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InputError("missing or empty text", source=str(root / "queries.jsonl"), line=line)
        all_queries[query_id] = text
    qrels = _qrels(root / "qrels" / f"{split}.tsv", corpus, all_queries)
    queries = {q: t for q, t in all_queries.items() if q in qrels}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels)


def _qrels(path: Path, corpus: dict[str, Document], queries: dict[str, str]) -> dict[str, dict[str, int]]:
    if not path.is_file():
        raise InputError("no qrels file", source=str(path))
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            cells = raw.rstrip("\n").split("\t")
            if len(cells) != 3:
                raise InputError(
                    f"expected 3 tab-separated columns, got {len(cells)}", source=str(path), line=number
                )
            query_id, document_id, score = (c.strip() for c in cells)
            try:
                grade = int(score)
            except ValueError:
                if number == 1 and not qrels:  # a header line such as "query-id corpus-id score"
                    continue
                raise InputError(
                    f"score {score!r} is not an integer", source=str(path), line=number
                ) from None
            if query_id not in queries or document_id not in corpus:
                unknown = f"query {query_id!r}" if query_id not in queries else f"document {document_id!r}"
                raise InputError(f"unknown {unknown}", source=str(path), line=number)
            qrels.setdefault(query_id, {})[document_id] = grade
    return qrels


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise InputError("no such file", source=str(path))
    with path.open(encoding="utf-8") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as e:
                raise InputError(f"malformed JSON: {e.msg}", source=str(path), line=number) from None
            if not isinstance(row, dict):
                raise InputError("not a JSON object", source=str(path), line=number)
            yield number, row


def _field(row: dict[str, Any], name: str, path: Path, line: int) -> str:
    value = row.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise InputError(f"missing or empty {name}", source=str(path), line=line)
    return value
