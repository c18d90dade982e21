"""Sources of documents: JSON Lines, CSV, Parquet, and any iterable of dicts (a ``datasets`` object too).

Every source turns rows into :class:`~sparsebridge.types.Document` the same way (the id may be a
string or an integer, the text a non-blank string, every other field metadata unless
``metadata_fields`` says otherwise). ``items()`` yields, in input order, either a document or a
:class:`BadInput` that says what is wrong with that row and where; iterating a source directly
raises :class:`~sparsebridge.errors.InputError` at the first bad row instead.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sparsebridge.errors import InputError, MissingExtraError
from sparsebridge.types import Document

__all__ = [
    "BadInput",
    "CsvSource",
    "DictSource",
    "ItemSource",
    "JsonlSource",
    "ParquetSource",
    "check_source",
    "input_name",
    "open_source",
]


@dataclass(frozen=True)
class BadInput:
    """An input row that cannot become a document.

    ``type`` is a short machine name (``malformed``, ``invalid_utf8``, ``duplicate_key``,
    ``not_object``, ``missing_id``, ``empty_id``, ``missing_text``, ``empty_text``,
    ``bad_metadata``), ``reason`` the human message; ``id`` is the row's id when it could be read.
    """

    type: str
    reason: str
    id: str | None = None
    source: str | None = None
    line: int | None = None

    def error(self) -> InputError:
        """This problem as an :class:`InputError` naming the file and line."""
        return InputError(self.reason, source=self.source, line=self.line)


@runtime_checkable
class ItemSource(Protocol):
    """Anything with ``items()``: documents or :class:`BadInput`, in a stable input order."""

    def items(self) -> Iterator[Document | BadInput]:
        """Every row, in input order, as a document or as what is wrong with it."""
        ...


def input_name(source: ItemSource) -> str:
    """The file a source reads (its ``path``), as a checkpoint records it; empty for an iterable."""
    return str(getattr(source, "path", "") or "")


class _Reject(Exception):
    def __init__(self, type: str, reason: str, id: str | None = None) -> None:
        super().__init__(reason)
        self.type = type
        self.reason = reason
        self.id = id


@dataclass(frozen=True)
class _Fields:
    id_field: str
    text_field: str
    metadata_fields: Sequence[str] | None

    def document(self, row: Mapping[str, Any]) -> Document:
        value = row.get(self.id_field)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise _Reject(
                "missing_id", f"field {self.id_field!r} (the id) is missing or not a string/integer"
            )
        document_id = str(value)
        if not document_id.strip():
            raise _Reject("empty_id", f"field {self.id_field!r} (the id) is empty")
        text = row.get(self.text_field)
        if not isinstance(text, str):
            raise _Reject(
                "missing_text",
                f"field {self.text_field!r} (the text) is missing or not a string",
                document_id,
            )
        if not text.strip():
            raise _Reject("empty_text", f"field {self.text_field!r} (the text) is empty", document_id)
        if self.metadata_fields is None:
            metadata = {k: v for k, v in row.items() if k not in (self.id_field, self.text_field)}
        else:
            metadata = {k: row[k] for k in self.metadata_fields if k in row}
        try:
            return Document(id=document_id, text=text, metadata=metadata)
        except ValueError as e:
            raise _Reject("bad_metadata", str(e), document_id) from None

    def item(self, row: Any, source: str | None, line: int | None) -> Document | BadInput:
        if not isinstance(row, Mapping):
            return BadInput("not_object", "expected a JSON object", source=source, line=line)
        try:
            return self.document(row)
        except _Reject as e:
            return BadInput(e.type, e.reason, e.id, source=source, line=line)


def _raise_first(items: Iterator[Document | BadInput]) -> Iterator[Document]:
    for item in items:
        if isinstance(item, BadInput):
            raise item.error()
        yield item


def _open(path: Path, mode: str = "rb", **kwargs: Any) -> Any:
    try:
        return path.open(mode, **kwargs)
    except FileNotFoundError:
        raise InputError("input file does not exist", source=str(path)) from None
    except OSError as e:
        raise InputError(f"cannot open input file: {e.strerror}", source=str(path)) from None


@dataclass(frozen=True)
class JsonlSource:
    """Documents in a JSON Lines file: one object per line, blank lines skipped.

    ``id_field`` may hold a string or an integer (integers become their decimal string).
    ``metadata_fields=None`` keeps every other field as metadata; ``()`` keeps none.

    Example:
        >>> [d.id for d in JsonlSource(Path("docs.jsonl"))]  # doctest: +SKIP
        ['doc-1', 'doc-2']
    """

    path: Path
    id_field: str = "id"
    text_field: str = "text"
    metadata_fields: Sequence[str] | None = None

    def __iter__(self) -> Iterator[Document]:
        """Yield documents in file order; the first bad line raises :class:`InputError`."""
        return _raise_first(self.items())

    def items(self) -> Iterator[Document | BadInput]:
        """Every non-blank line, in file order, as a document or as what is wrong with it."""
        for _, item in self._rows():
            yield item

    def _rows(self) -> Iterator[tuple[int, Document | BadInput]]:
        source = str(self.path)
        fields = _Fields(self.id_field, self.text_field, self.metadata_fields)
        with _open(self.path) as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                yield number, self._parse(raw, fields, source, number)

    @staticmethod
    def _parse(raw: bytes, fields: _Fields, source: str, number: int) -> Document | BadInput:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return BadInput("invalid_utf8", f"invalid UTF-8 at byte {e.start}", source=source, line=number)
        if number == 1:
            text = text.removeprefix("\ufeff")  # a byte order mark
        try:
            row = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
        except _DuplicateKey as e:
            return BadInput("duplicate_key", str(e), source=source, line=number)
        except (json.JSONDecodeError, ValueError) as e:
            return BadInput("malformed", f"malformed JSON: {e}", source=source, line=number)
        return fields.item(row, source, number)


@dataclass(frozen=True)
class CsvSource:
    """Documents in a CSV file with a header row (UTF-8, with or without a BOM); every value is a string.

    Example:
        >>> [d.text for d in CsvSource(Path("docs.csv"))]  # doctest: +SKIP
        ['The Nile is long.']
    """

    path: Path
    id_field: str = "id"
    text_field: str = "text"
    metadata_fields: Sequence[str] | None = None

    def __iter__(self) -> Iterator[Document]:
        """Yield documents in file order; the first bad row raises :class:`InputError`."""
        return _raise_first(self.items())

    def items(self) -> Iterator[Document | BadInput]:
        """Every data row, in file order (``line`` is the file line where the row starts)."""
        source = str(self.path)
        fields = _Fields(self.id_field, self.text_field, self.metadata_fields)
        # utf-8-sig: spreadsheet "CSV UTF-8" exports start with a byte order mark
        with _open(self.path, "r", encoding="utf-8-sig", newline="", errors="strict") as handle:
            reader = csv.reader(handle)
            header: list[str] | None = None
            while True:
                line = reader.line_num + 1  # blank lines are skipped below, so this is where the row starts
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except UnicodeDecodeError as e:
                    yield BadInput("invalid_utf8", f"invalid UTF-8: {e.reason}", source=source, line=line)
                    return  # the decoder cannot resynchronise: the rest of the file is unreadable
                except csv.Error as e:
                    yield BadInput("malformed", f"malformed CSV: {e}", source=source, line=line)
                    continue
                if not row:
                    continue
                if header is None:
                    header = row
                    continue
                if len(row) > len(header):
                    yield BadInput("malformed", "more values than header fields", source=source, line=line)
                    continue
                values: list[str | None] = [*row, *[None] * (len(header) - len(row))]
                yield fields.item(dict(zip(header, values, strict=True)), source, line)


@dataclass(frozen=True)
class ParquetSource:
    """Documents in a Parquet file, read in record batches (needs ``pyarrow``).

    ``line`` in errors is the 1-based row number.
    """

    path: Path
    id_field: str = "id"
    text_field: str = "text"
    metadata_fields: Sequence[str] | None = None
    batch_rows: int = 4096

    def __iter__(self) -> Iterator[Document]:
        """Yield documents in file order; the first bad row raises :class:`InputError`."""
        return _raise_first(self.items())

    def items(self) -> Iterator[Document | BadInput]:
        """Every row, in file order, as a document or as what is wrong with it."""
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            error = MissingExtraError("pyarrow", "parquet")
            ImportError.__init__(error, "reading Parquet needs pyarrow, not installed: pip install pyarrow")
            raise error from e
        if not self.path.exists():
            raise InputError("input file does not exist", source=str(self.path))
        fields = _Fields(self.id_field, self.text_field, self.metadata_fields)
        number = 0
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=self.batch_rows):
            for row in batch.to_pylist():
                number += 1
                yield fields.item(row, str(self.path), number)


@dataclass(frozen=True)
class DictSource:
    """Documents from any iterable of dicts: a list, a generator, a Hugging Face ``datasets.Dataset``.

    ``line`` in errors is the 1-based position in the iterable.

    Example:
        >>> rows = [{"id": 1, "text": "hello", "lang": "en"}]
        >>> [(d.id, dict(d.metadata)) for d in DictSource(rows)]
        [('1', {'lang': 'en'})]
    """

    rows: Iterable[Any]
    id_field: str = "id"
    text_field: str = "text"
    metadata_fields: Sequence[str] | None = None
    name: str = "<rows>"

    def __iter__(self) -> Iterator[Document]:
        """Yield documents in order; the first bad row raises :class:`InputError`."""
        return _raise_first(self.items())

    def items(self) -> Iterator[Document | BadInput]:
        """Every row, in order, as a document or as what is wrong with it."""
        fields = _Fields(self.id_field, self.text_field, self.metadata_fields)
        for number, row in enumerate(self.rows, start=1):
            if isinstance(row, Document):
                yield row
            else:
                yield fields.item(row, self.name, number)


def open_source(
    path: Path,
    *,
    id_field: str = "id",
    text_field: str = "text",
    metadata_fields: Sequence[str] | None = None,
) -> JsonlSource | CsvSource | ParquetSource:
    """The source for ``path`` by its extension: ``.csv``, ``.parquet``/``.pq``, else JSON Lines."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return CsvSource(path, id_field, text_field, metadata_fields)
    if suffix in (".parquet", ".pq"):
        return ParquetSource(path, id_field, text_field, metadata_fields)
    return JsonlSource(path, id_field, text_field, metadata_fields)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (plain ``json`` keeps the last one silently)."""
    row: dict[str, Any] = {}
    for key, value in pairs:
        if key in row:
            raise _DuplicateKey(f"duplicate key {key!r} in a JSON object")
        row[key] = value
    return row


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
        if isinstance(item, BadInput):
            errors.append(item.error())
        elif item.id in first_line:
            message = f"duplicate id {item.id!r} (first on line {first_line[item.id]})"
            errors.append(InputError(message, source=str(source.path), line=number))
        else:
            first_line[item.id] = number
    return len(first_line), errors
