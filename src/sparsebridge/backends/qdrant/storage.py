"""Where a Qdrant Edge shard keeps its parts: the storage options of a ``qdrant+edge://`` target.

Options (the target URI's query, ``qdrant+edge://DIR/C?index=cold&payload=cold&ids=cold``; each
one left out keeps the engine's default):

- ``index``: the sparse vectors' inverted index, ``pinned`` (in memory; the engine's default),
  ``cached`` (memory-mapped, kept in the page cache once read) or ``cold`` (memory-mapped, read
  from disk as needed).
- ``payload``: the stored payload (document text and metadata), ``cached`` or ``cold`` (the
  engine's default; it does not pin payload).
- ``ids``: the point id tracker, ``pinned``, ``cached`` or ``cold``.
- ``values``: the stored type of the sparse weights, ``float32`` (exact; the default),
  ``float16`` or ``uint8``. The last two are lossy: scores, and so rankings near ties, change
  (docs/qdrant.md has the measured effect on the top 10). Only on explicit request.

The stored values themselves (the sparse vectors) are always memory-mapped by the engine: the
page cache holds what searches read. A profile for a corpus larger than memory is ``index=cold&
payload=cold&ids=cold`` (docs/qdrant.md: which profile for which corpus size, measured).

The options are fixed when a shard is created and recorded beside it; a later open without
options uses the recorded ones, and an open with other options is refused (the engine would
otherwise rewrite its configuration, and values already stored keep their type).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

from sparsebridge.backends.qdrant.bodies import qdrant_edge_module

__all__ = ["EdgeStorage", "Placement", "ValueType"]


class Placement(str, Enum):
    """Where a part of the shard lives (Qdrant Edge's ``Memory``)."""

    PINNED = "pinned"
    CACHED = "cached"
    COLD = "cold"

    def edge(self) -> Any:
        """The ``qdrant_edge.Memory`` value."""
        return getattr(qdrant_edge_module().Memory, self.value.capitalize())


class ValueType(str, Enum):
    """The stored type of the sparse weights (Qdrant Edge's ``VectorStorageDatatype``)."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    UINT8 = "uint8"

    def edge(self) -> Any:
        """The ``qdrant_edge.VectorStorageDatatype`` value."""
        return getattr(qdrant_edge_module().VectorStorageDatatype, self.value.capitalize())


_CHOICES: dict[str, type[Enum]] = {
    "index": Placement,
    "payload": Placement,
    "ids": Placement,
    "values": ValueType,
}


@dataclass(frozen=True)
class EdgeStorage:
    """The storage options of a shard (see the module docstring); None keeps the engine's default.

    Example:
        >>> EdgeStorage.parse([("index", "cold"), ("payload", "cold")]).query()
        'index=cold&payload=cold'
    """

    index: Placement | None = None
    payload: Placement | None = None
    ids: Placement | None = None
    values: ValueType | None = None

    def __post_init__(self) -> None:
        for name, kind in _CHOICES.items():
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                raise TypeError(f"{name} must be a {kind.__name__} or None, got {value!r}")
        if self.payload is Placement.PINNED:
            raise ValueError("payload=pinned is not available (Qdrant Edge keeps payload cached or cold)")

    @classmethod
    def parse(
        cls, options: Mapping[str, str] | tuple[tuple[str, str], ...] | list[tuple[str, str]]
    ) -> EdgeStorage:
        """The storage of a target's options (``Target.options``).

        Raises:
            ValueError: An unknown option, or a value it does not take (the message lists both).
        """
        given = dict(options.items() if isinstance(options, Mapping) else options)
        chosen: dict[str, Any] = {}
        for name, text in given.items():
            kind = _CHOICES.get(name)
            if kind is None:
                raise ValueError(
                    f"unknown Qdrant Edge storage option {name!r} (known: {', '.join(_CHOICES)})"
                )
            try:
                chosen[name] = kind(text.lower())
            except ValueError:
                known = ", ".join(member.value for member in kind)
                raise ValueError(f"storage option {name}={text!r}: must be one of {known}") from None
        return cls(**chosen)

    def query(self) -> str:
        """The options as a URI query (``""`` for the engine's defaults)."""
        return "&".join(
            f"{f.name}={getattr(self, f.name).value}" for f in fields(self) if getattr(self, f.name)
        )

    def to_json(self) -> dict[str, str]:
        """The options that are set, as recorded beside the shard."""
        return {f.name: getattr(self, f.name).value for f in fields(self) if getattr(self, f.name)}
