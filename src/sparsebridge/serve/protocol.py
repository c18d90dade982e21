"""The service's request and response bodies, as pure functions (parsed and built here, no I/O).

``/embed_sparse`` follows Hugging Face text-embeddings-inference (TEI): ``{"inputs": str | [str],
"truncate": bool, "truncation_direction": "right" | "left", "prompt_name": null}`` in,
``[[{"index": i, "value": v}, ...], ...]`` out (one list per input, indices ascending). Errors are
TEI's ``{"error": message, "error_type": kind}``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from sparsebridge.types import SearchHit, SparseVector

__all__ = [
    "EmbedRequest",
    "ProtocolError",
    "SearchRequest",
    "error_body",
    "hit_json",
    "parse_embed_request",
    "parse_search_request",
    "sparse_json",
]


class ProtocolError(Exception):
    """A request the service refuses: an HTTP status, a TEI ``error_type`` and a message.

    ``headers`` go with the response (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self, status: int, error_type: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = dict(headers or {})

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.status, self.error_type, self.message, self.headers)


def error_body(error_type: str, message: str) -> dict[str, str]:
    """TEI's error body."""
    return {"error": message, "error_type": error_type}


@dataclass(frozen=True)
class EmbedRequest:
    """A parsed ``/embed_sparse`` request: the texts and whether long ones may be truncated."""

    texts: list[str]
    truncate: bool


@dataclass(frozen=True)
class SearchRequest:
    """A parsed ``/search`` request."""

    query: str
    k: int
    mode: str
    filter: Mapping[str, Any] | None = field(default=None)


def _object(body: object) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise ProtocolError(422, "validation", f"the body must be a JSON object, got {type(body).__name__}")
    return body


def _unknown(body: Mapping[str, Any], known: Collection[str]) -> None:
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise ProtocolError(422, "validation", f"unknown field(s): {', '.join(unknown)}")


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ProtocolError(422, "validation", f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ProtocolError(400, "empty", f"{what} is empty")
    return value


def parse_embed_request(body: object, *, max_inputs: int, auto_truncate: bool) -> EmbedRequest:
    """Check a decoded ``/embed_sparse`` body.

    Raises:
        ProtocolError: 400 for empty inputs, 413 for more than ``max_inputs`` texts, 422 for the
            wrong shapes, left truncation, or a prompt name (the model's own query or document
            prompt is always used).

    Example:
        >>> parse_embed_request({"inputs": "hi"}, max_inputs=8, auto_truncate=True)
        EmbedRequest(texts=['hi'], truncate=True)
    """
    body = _object(body)  # other fields are ignored, as text-embeddings-inference ignores them
    if "inputs" not in body:
        raise ProtocolError(422, "validation", "missing field: inputs")
    inputs = body["inputs"]
    if isinstance(inputs, list):
        if not inputs:
            raise ProtocolError(400, "empty", "inputs is an empty list")
        if len(inputs) > max_inputs:
            raise ProtocolError(
                413, "validation", f"{len(inputs)} inputs in one request; the most is {max_inputs}"
            )
        texts = [_text(text, f"inputs[{n}]") for n, text in enumerate(inputs)]
    else:
        texts = [_text(inputs, "inputs")]
    truncate = body.get("truncate")
    if truncate is None:
        truncate = auto_truncate
    if not isinstance(truncate, bool):
        raise ProtocolError(422, "validation", "truncate must be true or false")
    direction = body.get("truncation_direction")
    if direction is not None:
        if not isinstance(direction, str) or direction.lower() not in ("right", "left"):
            raise ProtocolError(422, "validation", "truncation_direction must be 'right' or 'left'")
        if direction.lower() == "left" and truncate:
            raise ProtocolError(422, "validation", "this service truncates on the right only")
    if body.get("prompt_name") is not None:
        raise ProtocolError(
            422,
            "validation",
            "prompt_name is not supported: the model's own query or document prompt applies",
        )
    return EmbedRequest(texts=texts, truncate=truncate)


def parse_search_request(body: object, *, modes: Collection[str], max_k: int) -> SearchRequest:
    """Check a decoded ``/search`` body: ``{"query": str, "k": 10, "mode": "sparse", "filter": {...}}``.

    Raises:
        ProtocolError: 400 for an empty query, 422 for the wrong shapes, a ``k`` outside
            ``[1, max_k]`` or a mode the service was not started with.

    Example:
        >>> parse_search_request({"query": "moon", "k": 3}, modes=["sparse"], max_k=100)
        SearchRequest(query='moon', k=3, mode='sparse', filter=None)
    """
    body = _object(body)
    _unknown(body, ("query", "k", "mode", "filter"))
    if "query" not in body:
        raise ProtocolError(422, "validation", "missing field: query")
    query = _text(body["query"], "query")
    k = body.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k:
        raise ProtocolError(422, "validation", f"k must be an integer in [1, {max_k}], got {k!r}")
    mode = body.get("mode", "sparse")
    if mode not in modes:
        offered = ", ".join(sorted(modes))
        raise ProtocolError(422, "validation", f"mode must be one of: {offered} (got {mode!r})")
    where = body.get("filter")
    if where is not None and not isinstance(where, dict):
        raise ProtocolError(422, "validation", "filter must be a JSON object")
    return SearchRequest(query=query, k=k, mode=mode, filter=where)


def sparse_json(vector: SparseVector) -> list[dict[str, int | float]]:
    """TEI's sparse embedding: ``[{"index": i, "value": v}, ...]``, indices ascending.

    Example:
        >>> sparse_json(SparseVector.from_dict({7: 0.5, 3: 1.25}))
        [{'index': 3, 'value': 1.25}, {'index': 7, 'value': 0.5}]
    """
    return [
        {"index": index, "value": value}
        for index, value in zip(vector.indices.tolist(), vector.values.tolist(), strict=True)
    ]


def hit_json(hit: SearchHit) -> dict[str, Any]:
    """One hit of ``/search``: ``{"id", "score", "text", "metadata"}`` (the stored payload's)."""
    return {
        "id": hit.id,
        "score": hit.score,
        "text": hit.payload.get("text"),
        "metadata": hit.payload.get("metadata", {}),
    }
