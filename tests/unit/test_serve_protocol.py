"""The service's request parsing, response bodies and options, as data (no server, no model)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from sparsebridge.serve.options import API_KEY_ENV, ServeOptions, read_api_key
from sparsebridge.serve.protocol import (
    EmbedRequest,
    ProtocolError,
    SearchRequest,
    error_body,
    hit_json,
    parse_embed_request,
    parse_search_request,
    sparse_json,
)
from sparsebridge.types import SearchHit, SparseVector


def embed(body: object, max_inputs: int = 4, auto_truncate: bool = True) -> EmbedRequest:
    return parse_embed_request(body, max_inputs=max_inputs, auto_truncate=auto_truncate)


def refused(call: object, *args: object, **kwargs: object) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


def test_embed_requests_in_tei_shapes() -> None:
    assert embed({"inputs": "a"}) == EmbedRequest(["a"], truncate=True)
    assert embed({"inputs": ["a", "b"], "truncate": False}) == EmbedRequest(["a", "b"], truncate=False)
    assert embed({"inputs": "a"}, auto_truncate=False).truncate is False
    assert embed({"inputs": "a", "truncation_direction": "Right", "prompt_name": None}).texts == ["a"]
    assert embed({"inputs": "a", "truncate": False, "truncation_direction": "left"}).texts == ["a"]
    assert embed({"inputs": "a", "something_else": 1}).texts == ["a"]  # TEI ignores unknown fields too


@pytest.mark.parametrize(
    ("body", "status", "error_type"),
    [
        ({"inputs": []}, 400, "empty"),
        ({"inputs": ""}, 400, "empty"),
        ({"inputs": ["a", " \n"]}, 400, "empty"),
        ({"inputs": ["a"] * 5}, 413, "validation"),
        ({"inputs": [1]}, 422, "validation"),
        ({"inputs": [[101, 102]]}, 422, "validation"),
        ({"inputs": None}, 422, "validation"),
        ({}, 422, "validation"),
        ("a", 422, "validation"),
        ({"inputs": "a", "truncate": 1}, 422, "validation"),
        ({"inputs": "a", "truncation_direction": "middle"}, 422, "validation"),
        ({"inputs": "a", "truncation_direction": "left"}, 422, "validation"),
        ({"inputs": "a", "prompt_name": "query"}, 422, "validation"),
    ],
)
def test_bad_embed_requests(body: object, status: int, error_type: str) -> None:
    error = refused(embed, body)
    assert (error.status, error.error_type) == (status, error_type)


def test_search_requests() -> None:
    parse = parse_search_request
    assert parse({"query": "q"}, modes={"sparse"}, max_k=50) == SearchRequest("q", 10, "sparse")
    assert parse(
        {"query": "q", "k": 3, "mode": "hybrid", "filter": {"a": 1}}, modes={"sparse", "hybrid"}, max_k=50
    ) == (SearchRequest("q", 3, "hybrid", {"a": 1}))
    for body in (
        {"query": "q", "k": 0},
        {"query": "q", "k": 51},
        {"query": "q", "k": True},
        {"query": "q", "k": 2.0},
        {"query": "q", "mode": "hybrid"},
        {"query": "q", "filter": [1]},
        {"query": "q", "limit": 3},
        {"query": 3},
        {},
    ):
        assert refused(parse, body, modes={"sparse"}, max_k=50).status == 422, body
    assert refused(parse, {"query": "  "}, modes={"sparse"}, max_k=50).status == 400


def test_response_bodies() -> None:
    vector = SparseVector.from_dict({9: 0.25, 2: 1.5})
    assert sparse_json(vector) == [{"index": 2, "value": 1.5}, {"index": 9, "value": 0.25}]
    assert sparse_json(SparseVector.from_dict({})) == []
    hit = SearchHit("d1", 2.5, {"doc_id": "d1", "text": "t", "metadata": {"a": 1}})
    assert hit_json(hit) == {"id": "d1", "score": 2.5, "text": "t", "metadata": {"a": 1}}
    assert error_body("empty", "m") == {"error": "m", "error_type": "empty"}


def test_protocol_errors_pickle() -> None:
    error = ProtocolError(503, "overloaded", "full", {"Retry-After": "1"})
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.status, copy.error_type, copy.message, copy.headers) == (
        503,
        "overloaded",
        "full",
        {"Retry-After": "1"},
    )


def test_options_are_validated_and_hide_the_key() -> None:
    assert ServeOptions().max_inputs == 32
    for bad in (
        {"task": "passage"},
        {"max_queue": 0},
        {"max_inputs": True},
        {"top_k": 0},
        {"min_weight": -1.0},
        {"api_key": " "},
    ):
        with pytest.raises(ValueError):
            ServeOptions(**bad)  # type: ignore[arg-type]
    assert "hunter2" not in repr(ServeOptions(api_key="hunter2"))


def test_the_key_comes_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    assert read_api_key(None) is None
    monkeypatch.setenv(API_KEY_ENV, " from-env \n")
    assert read_api_key(None) == "from-env"
    path = tmp_path / "key"
    path.write_text("from-file\n")
    assert read_api_key(path) == "from-file"  # the file wins
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_api_key(path)
    monkeypatch.setenv(API_KEY_ENV, "")
    with pytest.raises(ValueError, match="empty"):
        read_api_key(None)
