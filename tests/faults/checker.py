"""The one checker every fault test ends with: read back every id from the engine and classify it.

- lost: acknowledged (the checkpoint covered it, or the run said it was written) but not stored;
- unexpected: stored but never sent;
- duplicated: one document id stored more than once;
- differs: stored vector not equal (within a float tolerance) to a clean run's vector of the same text.

A fault test passes only with zero of each.
"""

from __future__ import annotations

import json
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sparsebridge.types import Document, SparseVector

Stored = dict[str, list[dict[int, float]]]


@dataclass
class Verdict:
    """Ids in each bad class; ``present`` is how many distinct ids the engine holds."""

    present: int
    lost: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    differs: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.unexpected or self.duplicated or self.differs)

    def __str__(self) -> str:
        return (
            f"present={self.present} lost={len(self.lost)} {self.lost[:5]} "
            f"unexpected={len(self.unexpected)} {self.unexpected[:5]} "
            f"duplicated={len(self.duplicated)} {self.duplicated[:5]} "
            f"differs={len(self.differs)} {self.differs[:5]}"
        )


def read_opensearch(url: str, index: str) -> Stored:
    """Every document of ``index`` (refreshed first): doc_id -> the stored sparse vectors."""
    _request(url, f"/{index}/_refresh", method="POST")
    stored: Stored = defaultdict(list)
    body = {"size": 2000, "_source": ["doc_id", "splade"], "sort": ["_doc"]}
    page = _request(url, f"/{index}/_search?scroll=2m", body)
    while page["hits"]["hits"]:
        for hit in page["hits"]["hits"]:
            source = hit["_source"]
            stored[str(source["doc_id"])].append({int(k): float(v) for k, v in source["splade"].items()})
        page = _request(url, "/_search/scroll", {"scroll": "2m", "scroll_id": page["_scroll_id"]})
    return dict(stored)


def read_qdrant(client: Any, collection: str, vector_name: str = "splade") -> Stored:
    """Every point of ``collection``: payload doc_id -> the stored sparse vectors."""
    stored: Stored = defaultdict(list)
    offset = None
    while True:
        points, offset = client.scroll(collection, limit=1000, offset=offset, with_vectors=True)
        for point in points:
            vector = point.vector[vector_name]
            stored[str(point.payload["doc_id"])].append(dict(zip(vector.indices, vector.values, strict=True)))
        if offset is None:
            return dict(stored)


def read_qdrant_edge(shard: str, vector_name: str = "splade") -> Stored:
    """Every point of the Qdrant Edge shard directory ``shard`` (read with qdrant_edge itself)."""
    import qdrant_edge

    edge = qdrant_edge.EdgeShard.load(shard)  # replays the write-ahead log a killed run left
    stored: Stored = defaultdict(list)
    offset = None
    try:
        while True:
            request = qdrant_edge.ScrollRequest(
                offset=offset, limit=1000, with_payload=True, with_vector=True
            )
            points, offset = edge.scroll(request)
            for point in points:
                vector = point.vector[vector_name]
                weights = dict(zip(vector.indices, vector.values, strict=True))
                stored[str(point.payload["doc_id"])].append(weights)
            if offset is None:
                return dict(stored)
    finally:
        edge.close()


def check(
    stored: Mapping[str, list[dict[int, float]]],
    *,
    sent: Iterable[str],
    acknowledged: Iterable[str],
    expected: Mapping[str, SparseVector],
    tolerance: float = 1e-4,
) -> Verdict:
    """Classify every id (see the module docstring)."""
    sent_ids = set(sent)
    verdict = Verdict(present=len(stored))
    verdict.lost = sorted(set(acknowledged) - set(stored))
    verdict.unexpected = sorted(set(stored) - sent_ids)
    verdict.duplicated = sorted(i for i, vectors in stored.items() if len(vectors) > 1)
    for doc_id, vectors in stored.items():
        want = expected.get(doc_id)
        if want is not None and not _close(vectors[0], want.as_dict(), tolerance):
            verdict.differs.append(doc_id)
    verdict.differs.sort()
    return verdict


def check_opensearch_index(url: str, index: str, documents: Sequence[Document], encoder: Any) -> Verdict:
    """:func:`check` for an index that should hold ``documents``, all sent and acknowledged, as a
    clean run of ``encoder`` encodes them."""
    ids = [d.id for d in documents]
    clean = dict(zip(ids, encoder.encode_documents([d.text for d in documents]), strict=True))
    return check(read_opensearch(url, index), sent=ids, acknowledged=ids, expected=clean)


def _close(have: dict[int, float], want: dict[int, float], tolerance: float) -> bool:
    scale = max([1.0, *want.values()])
    return all(abs(have.get(i, 0.0) - want.get(i, 0.0)) <= tolerance * scale for i in set(have) | set(want))


def _request(url: str, path: str, body: Any = None, method: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())
