from __future__ import annotations

import re
from pathlib import Path

import pytest

from sparsebridge.errors import InputError
from sparsebridge.ingest import BadInput, CsvSource, JsonlSource, check_source
from sparsebridge.types import Document


def write(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "docs.jsonl"
    path.write_bytes(content)
    return path


def test_reads_ids_text_and_metadata(tmp_path: Path) -> None:
    path = write(tmp_path, b'{"id": 1, "text": "a b", "lang": "en"}\n\n{"id": "x", "text": "c", "n": [1]}\n')
    docs = list(JsonlSource(path))
    assert [(d.id, d.text, dict(d.metadata)) for d in docs] == [
        ("1", "a b", {"lang": "en"}),
        ("x", "c", {"n": [1]}),
    ]
    only = list(JsonlSource(path, metadata_fields=("lang",)))
    assert [dict(d.metadata) for d in only] == [{"lang": "en"}, {}]


def test_custom_fields(tmp_path: Path) -> None:
    path = write(tmp_path, b'{"_id": "d1", "body": "hello"}\n')
    [doc] = JsonlSource(path, id_field="_id", text_field="body")
    assert (doc.id, doc.text) == ("d1", "hello")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"{not json", "malformed JSON"),
        (b'{"id": "a", "text": NaN}', "malformed JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"text": "t"}', "the id) is missing"),
        (b'{"id": 1.5, "text": "t"}', "the id) is missing"),
        (b'{"id": true, "text": "t"}', "the id) is missing"),
        (b'{"id": " ", "text": "t"}', "the id) is empty"),
        (b'{"id": "a"}', "the text) is missing"),
        (b'{"id": "a", "text": 3}', "the text) is missing"),
        (b'{"id": "a", "text": "  \\t "}', "the text) is empty"),
        (b'{"id": "a", "text": "ok \xff"}', "invalid UTF-8"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, line: bytes, message: str) -> None:
    path = write(tmp_path, b'{"id": "ok", "text": "fine"}\n' + line + b"\n")
    with pytest.raises(InputError, match=re.escape(message)) as info:
        list(JsonlSource(path))
    assert info.value.line == 2
    assert f"{path}:2:" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        list(JsonlSource(tmp_path / "nope.jsonl"))


def test_check_source_collects_every_error_including_duplicates(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        b'{"id": "a", "text": "x"}\n{"id": "b", "text": ""}\n{"id": "a", "text": "y"}\n'
        b'{oops\n{"id": "c", "text": "z"}\n',
    )
    count, errors = check_source(JsonlSource(path))
    assert count == 2
    assert [e.line for e in errors] == [2, 3, 4]
    assert "duplicate id 'a' (first on line 1)" in str(errors[1])


def test_check_source_caps_errors(tmp_path: Path) -> None:
    path = write(tmp_path, b"{bad\n" * 50)
    _, errors = check_source(JsonlSource(path), max_errors=5)
    assert len(errors) == 5


def test_csv_with_a_bom_reads_its_header_and_lines_are_file_lines(tmp_path: Path) -> None:
    path = tmp_path / "docs.csv"
    # a BOM first, as spreadsheet "CSV UTF-8" exports write it
    path.write_bytes(b'\xef\xbb\xbfid,text\n1,fine\n2,\n\n3,"two\nlines"\n4,\n5,a,extra\n')
    items = list(CsvSource(path).items())
    assert [(type(i).__name__, i.line if isinstance(i, BadInput) else i.id) for i in items] == [
        ("Document", "1"),
        ("BadInput", 3),  # the header is line 1, the first data row line 2
        ("Document", "3"),  # a quoted field spans lines 5-6; line 4 is blank
        ("BadInput", 7),
        ("BadInput", 8),
    ]
    assert [i.type for i in items if isinstance(i, BadInput)] == ["empty_text", "empty_text", "malformed"]


def test_jsonl_with_a_utf8_bom_reads_its_first_line(tmp_path: Path) -> None:
    path = write(tmp_path, b'\xef\xbb\xbf{"id": "a", "text": "x"}\n{"id": "b", "text": "y"}\n')
    assert [d.id for d in JsonlSource(path)] == ["a", "b"]


def test_duplicate_keys_in_a_json_line_are_bad_input(tmp_path: Path) -> None:
    path = write(tmp_path, b'{"id": "a", "text": "x"}\n{"id": "b", "text": "y", "text": "z"}\n')
    [good, bad] = list(JsonlSource(path).items())
    assert isinstance(good, Document)
    assert isinstance(bad, BadInput) and (bad.type, bad.line) == ("duplicate_key", 2)
    assert "duplicate key 'text'" in bad.reason
    count, errors = check_source(JsonlSource(path))
    assert count == 1 and "duplicate key 'text'" in str(errors[0])
    nested = write(tmp_path, b'{"id": "a", "text": "x", "meta": {"k": 1, "k": 2}}\n')
    [item] = list(JsonlSource(nested).items())
    assert isinstance(item, BadInput) and item.type == "duplicate_key"
