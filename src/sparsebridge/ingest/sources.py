"""Reading documents from JSON Lines, with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsebridge.errors import InputError
from sparsebridge.types import Document

__all__ = ["JsonlSource", "check_source"]


@dataclass(frozen=True)
class JsonlSource:
    """Documents in a JSON Lines file: one object per line, blank lines skipped.

    ``id_field`` may hold a string or an integer (integers become their decimal string).
    ``metadata_fields=None`` keeps every other field as metadata; ``()`` keeps none.
    """

    path: Path
    id_field: str = "id"
    text_field: str = "text"
    metadata_fields: Sequence[str] | None = None

    def __iter__(self) -> Iterator[Document]:
        """Yield documents in file order; the first bad line raises :class:`InputError`."""
        for _, item in self._rows():
            if isinstance(item, InputError):
                raise item
            yield item

    def _rows(self) -> Iterator[tuple[int, Document | InputError]]:
        """Every non-blank line as a document or as the error that describes it."""
        source = str(self.path)
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            raise InputError("input file does not exist", source=source) from None
        except OSError as e:
            raise InputError(f"cannot open input file: {e.strerror}", source=source) from None
        with handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    yield number, self._parse(raw, source, number)
                except InputError as e:
                    yield number, e

    def _parse(self, raw: bytes, source: str, number: int) -> Document:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"invalid UTF-8 at byte {e.start}", source=source, line=number) from None
        try:
            row = json.loads(text, parse_constant=_reject_constant)
        except (json.JSONDecodeError, ValueError) as e:
            raise InputError(f"malformed JSON: {e}", source=source, line=number) from None
        if not isinstance(row, dict):
            raise InputError("expected a JSON object", source=source, line=number)
        document_id = self._id(row, source, number)
        text = self._text(row, source, number)
        try:
            return Document(id=document_id, text=text, metadata=self._metadata(row))
        except ValueError as e:
            raise InputError(str(e), source=source, line=number) from None

    def _id(self, row: dict[str, Any], source: str, number: int) -> str:
        value = row.get(self.id_field)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise InputError(
                f"field {self.id_field!r} (the id) is missing or not a string/integer",
                source=source,
                line=number,
            )
        document_id = str(value)
        if not document_id.strip():
            raise InputError(f"field {self.id_field!r} (the id) is empty", source=source, line=number)
        return document_id

    def _text(self, row: dict[str, Any], source: str, number: int) -> str:
        value = row.get(self.text_field)
        if not isinstance(value, str):
            raise InputError(
                f"field {self.text_field!r} (the text) is missing or not a string", source=source, line=number
            )
        if not value.strip():
            raise InputError(f"field {self.text_field!r} (the text) is empty", source=source, line=number)
        return value

    def _metadata(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.metadata_fields is None:
            return {k: v for k, v in row.items() if k not in (self.id_field, self.text_field)}
        return {k: row[k] for k in self.metadata_fields if k in row}


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def check_source(source: JsonlSource, *, max_errors: int = 20) -> tuple[int, list[InputError]]:
    """Read the whole source once: the number of good documents and the errors (up to ``max_errors``).

    Checks everything :class:`JsonlSource` checks line by line, plus duplicate ids across lines,
    so that a run can refuse bad input before it encodes or writes anything.
    """
    errors: list[InputError] = []
    first_line: dict[str, int] = {}
    for number, item in source._rows():
        if len(errors) >= max_errors:
            break
        if isinstance(item, InputError):
            errors.append(item)
        elif item.id in first_line:
            message = f"duplicate id {item.id!r} (first on line {first_line[item.id]})"
            errors.append(InputError(message, source=str(source.path), line=number))
        else:
            first_line[item.id] = number
    return len(first_line), errors
