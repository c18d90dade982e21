"""Request bodies the two Lucene engines (OpenSearch and Elasticsearch) share; pure, no I/O.

The ``rank_features`` mapping and query, ``_bulk`` lines, the BM25 ``match`` clause and the
``_msearch`` line format. Every body is built as data and tested as data (snapshot tests in
``tests/unit/test_rank_features_bodies.py``); each engine's own bodies (dense fields, native
hybrid) live in its package, and :mod:`sparsebridge.backends.lucene.adapter` sends them.

Feature naming
    A feature is keyed by its **token id** in decimal (``1012``), never by the token string.
    Decimal strings of distinct integers are distinct, so the naming is collision-free for any
    vocabulary, and it never contains a dot: ES >= 8.7 rejects dotted names in ``rank_features``
    and OpenSearch indexes them but a ``rank_feature`` query on one silently matches nothing (the
    BERT uncased vocabulary has three such tokens: ``.``, ``...``, ``##.``). Integer token ids are
    also what OpenSearch 3.3 ``sparse_vector`` requires. Use ``Encoder.token``/``Encoder.tokens``
    to read names back as tokens.

Weights
    Only finite weights ``>= 1.17549435e-38`` (the smallest normal float32) are sent; the engines
    reject a whole document for a zero, negative, non-finite or subnormal value. A document left
    with no feature is refused before any network call.

Exact scoring
    ``rank_features`` + ``bool.should`` of ``rank_feature`` clauses with ``"linear": {}`` and
    ``"boost": <query weight>`` scores the dot product (the default ``saturation`` function does
    not). The engines keep 9 significant bits per stored value (about 0.4% relative error).
    Queries are pruned to their ``max_terms`` largest weights (the engines' clause limit).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

import numpy as np

from sparsebridge.errors import InputError
from sparsebridge.types import Document, SparseVector

__all__ = [
    "MIN_NORMAL_FLOAT32",
    "PAYLOAD_FIELDS",
    "FieldType",
    "bulk_delete_line",
    "bulk_index_lines",
    "check_field_name",
    "feature_name",
    "features",
    "index_body",
    "is_knn_section",
    "mapping_problems",
    "match_clause",
    "msearch_body",
    "msearch_lines",
    "query_features",
    "rank_features_search",
    "search_body",
]

MIN_NORMAL_FLOAT32 = float(np.finfo(np.float32).tiny)  # 1.17549435e-38
PAYLOAD_FIELDS = ("doc_id", "text", "metadata")


class FieldType(str, Enum):
    """How the sparse vector is mapped.

    ``RANK_FEATURES``: OpenSearch >= 1.1 and Elasticsearch >= 7.12 (``linear`` function).
    ``SPARSE_VECTOR``: Elasticsearch >= 8.15 (``sparse_vector`` field and query).
    """

    RANK_FEATURES = "rank_features"
    SPARSE_VECTOR = "sparse_vector"


def feature_name(token_id: int) -> str:
    """The feature name of a token id: its decimal string (collision-free, never dotted).

    Example:
        >>> feature_name(1012)  # the BERT token "."
        '1012'
    """
    if isinstance(token_id, bool) or not isinstance(token_id, (int, np.integer)) or token_id < 0:
        raise ValueError(f"token id must be a non-negative integer, got {token_id!r}")
    return str(int(token_id))


def _float32_text(value: np.float32) -> float:
    # The shortest decimal that reads back as the same float32 (0.3, not 0.30000001192092896).
    return float(str(value))


def features(vector: SparseVector) -> dict[str, float]:
    """``{feature name: weight}`` with only the weights the engines accept (finite, >= smallest normal).

    Example:
        >>> features(SparseVector.from_dict({1012: 0.5, 7: 1e-39}))
        {'1012': 0.5}
    """
    values = np.asarray(vector.values, dtype=np.float32)
    keep = np.isfinite(values) & (values >= np.float32(MIN_NORMAL_FLOAT32))
    return {
        feature_name(int(i)): _float32_text(v)
        for i, v in zip(vector.indices[keep].tolist(), values[keep], strict=True)
    }


def query_features(query: SparseVector, *, max_terms: int) -> dict[str, float]:
    """The query's sendable features, pruned to its ``max_terms`` largest weights (ties: lower id)."""
    if isinstance(max_terms, bool) or not isinstance(max_terms, int) or max_terms <= 0:
        raise ValueError(f"max_terms must be a positive integer, got {max_terms!r}")
    return features(query.prune(top_k=max_terms))


def index_body(
    *,
    field: str,
    field_type: FieldType = FieldType.RANK_FEATURES,
    shards: int | None = None,
    replicas: int | None = None,
) -> dict[str, Any]:
    """The create-index body: the sparse field, ``doc_id`` (keyword), ``text`` (BM25), ``metadata``.

    ``metadata`` is stored, not indexed (``enabled: false``), so arbitrary JSON never clashes with
    the mapping; ``dynamic: strict`` refuses any other field.

    Example:
        >>> index_body(field="splade")["mappings"]["properties"]["splade"]
        {'type': 'rank_features'}
    """
    settings: dict[str, Any] = {}
    if shards is not None:
        settings["number_of_shards"] = shards
    if replicas is not None:
        settings["number_of_replicas"] = replicas
    body: dict[str, Any] = {
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "doc_id": {"type": "keyword"},
                "text": {"type": "text"},
                "metadata": {"type": "object", "enabled": False},
                field: {"type": field_type.value},
            },
        }
    }
    if settings:
        body["settings"] = {"index": settings}
    return body


def mapping_problems(mapping: Mapping[str, Any], *, field: str, field_type: FieldType) -> list[str]:
    """What in an existing index mapping (``{"properties": ...}``) differs from :func:`index_body`."""
    wanted = index_body(field=field, field_type=field_type)["mappings"]["properties"]
    properties = mapping.get("properties", {})
    problems = []
    for name, spec in wanted.items():
        have = properties.get(name)
        if have is None:
            problems.append(f"no field {name!r}")
            continue
        have_type = have.get("type", "object")
        if have_type != spec["type"]:
            problems.append(f"field {name!r} is {have_type!r}, wanted {spec['type']!r}")
    return problems


def bulk_index_lines(
    document: Document,
    vector: SparseVector,
    *,
    doc_key: str,
    field: str,
    version: int | None = None,
    dense: tuple[str, list[float]] | None = None,
) -> str:
    """The two NDJSON lines (action, source) that upsert one document under ``_id`` ``doc_key``.

    With ``version`` (the run number), the action uses external versioning: the engine refuses
    (409) to overwrite a copy stored with the same or a higher version. ``dense`` is
    ``(field name, embedding)`` for an index with a dense field.

    Raises:
        InputError: No weight of the vector can be sent (all below the smallest normal float32).
    """
    sparse = features(vector)
    if not sparse:
        raise InputError(
            f"document {document.id!r} has no weight >= {MIN_NORMAL_FLOAT32} (the engines' smallest value)"
        )
    source: dict[str, Any] = {
        "doc_id": document.id,
        "text": document.text,
        "metadata": dict(document.metadata),
        field: sparse,
    }
    if dense is not None:
        source[dense[0]] = dense[1]
    meta: dict[str, Any] = {"_id": doc_key}
    if version is not None:
        meta.update(version=version, version_type="external")
    return _line({"index": meta}) + _line(source)


def bulk_delete_line(doc_key: str) -> str:
    """The NDJSON line that deletes ``_id`` ``doc_key``."""
    return _line({"delete": {"_id": doc_key}})


def _line(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"


def search_body(query: dict[str, Any], k: int) -> dict[str, Any]:
    """A search body for ``query``: top ``k`` hits with the stored payload fields, no total count."""
    return {"size": k, "track_total_hits": False, "_source": list(PAYLOAD_FIELDS), "query": query}


def rank_features_search(terms: Mapping[str, float], *, field: str, k: int) -> dict[str, Any]:
    """Exact dot product on a ``rank_features`` field: ``bool.should`` of linear ``rank_feature`` clauses.

    Example:
        >>> rank_features_search({"1012": 0.5}, field="splade", k=3)["query"]
        {'bool': {'should': [{'rank_feature': {'field': 'splade.1012', 'linear': {}, 'boost': 0.5}}]}}
    """
    clauses = [
        {"rank_feature": {"field": f"{field}.{name}", "linear": {}, "boost": weight}}
        for name, weight in terms.items()
    ]
    return search_body({"bool": {"should": clauses}}, k)


def check_field_name(field: str) -> None:
    """A sparse field name: non-empty, no dots (a dotted name would address a sub-field)."""
    if not field or "." in field or field in PAYLOAD_FIELDS or not field.isprintable():
        raise ValueError(f"invalid sparse field name {field!r} (no dots; not one of {PAYLOAD_FIELDS})")


def match_clause(text: str, *, field: str = "text", boost: float | None = None) -> dict[str, Any]:
    """BM25 leg: ``{"match": {field: {"query": text}}}`` (with ``boost`` when given).

    Example:
        >>> match_clause("red planet")
        {'match': {'text': {'query': 'red planet'}}}
    """
    body: dict[str, Any] = {"query": text}
    if boost is not None:
        body["boost"] = boost
    return {"match": {field: body}}


def msearch_lines(
    index: str, bodies: Sequence[Mapping[str, Any]], *, source: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """``_msearch`` lines: a header naming ``index`` before each search body.

    With ``source``, each body asks only for those ``_source`` fields and no total hit count.
    """
    lines: list[dict[str, Any]] = []
    for body in bodies:
        lines.append({"index": index})
        extra: dict[str, Any] = {} if source is None else {"track_total_hits": False, "_source": list(source)}
        lines.append({**body, **extra})
    return lines


def is_knn_section(leg: Mapping[str, Any]) -> bool:
    """Whether a leg is Elasticsearch's top-level ``knn`` section (it has a ``query_vector``).

    Every other leg is a query clause (OpenSearch's dense leg is the ``knn`` query clause).
    """
    return "query_vector" in leg


def msearch_body(
    index: str,
    legs: Sequence[Mapping[str, Any]],
    *,
    size: int,
    source: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """``_msearch`` lines: a header and a body per leg, every leg in one round trip.

    A leg is a query clause (sent as ``query``) or a ``knn`` section (:func:`is_knn_section`,
    sent as ``knn``). With ``source``, each body asks only for those ``_source`` fields and no
    total hit count.

    Example:
        >>> msearch_body("docs", [match_clause("mars")], size=5)
        [{'index': 'docs'}, {'size': 5, 'query': {'match': {'text': {'query': 'mars'}}}}]
    """
    searches = [
        {"size": size, "knn": dict(leg)} if is_knn_section(leg) else {"size": size, "query": dict(leg)}
        for leg in legs
    ]
    return msearch_lines(index, searches, source=source)
