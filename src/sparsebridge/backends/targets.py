"""Target URIs, parsed in one place into a typed :class:`Target`.

- ``qdrant+edge://PATH/COLLECTION``: Qdrant Edge in this process, the shard directory
  ``PATH/COLLECTION`` (the default).
- ``qdrant+local://PATH/COLLECTION``: qdrant-client's local mode storing in directory ``PATH``.
- ``qdrant://HOST:PORT/COLLECTION`` (``qdrant+https://`` for TLS): a Qdrant server; default port 6333.
- ``opensearch://HOST:PORT/INDEX`` (``opensearch+https://`` for TLS): an OpenSearch index
  (``rank_features``); default port 9200.
- ``elasticsearch://HOST:PORT/INDEX`` (``elasticsearch+https://`` for TLS): an Elasticsearch index
  (``sparse_vector`` from 8.15 on, else ``rank_features``); default port 9200.
- ``memory://``: the exact in-memory reference (lives only as long as the process).

Everything else (the CLI, checkpoints, :func:`~sparsebridge.backends.open_backend`) reads the
parsed fields; nobody looks at the URI string again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

__all__ = ["Engine", "Target", "parse_target"]


class Engine(str, Enum):
    """The engine a target lives in."""

    MEMORY = "memory"
    QDRANT = "qdrant"
    QDRANT_EDGE = "qdrant-edge"
    OPENSEARCH = "opensearch"
    ELASTICSEARCH = "elasticsearch"


@dataclass(frozen=True)
class _Scheme:
    engine: Engine
    tls: bool = False
    embedded: bool = False
    default_port: int | None = None
    what: str = "INDEX"


_SCHEMES = {
    "memory": _Scheme(Engine.MEMORY),
    "qdrant+local": _Scheme(Engine.QDRANT, embedded=True, what="COLLECTION"),
    "qdrant+edge": _Scheme(Engine.QDRANT_EDGE, embedded=True, what="COLLECTION"),
    "qdrant": _Scheme(Engine.QDRANT, default_port=6333, what="COLLECTION"),
    "qdrant+https": _Scheme(Engine.QDRANT, tls=True, default_port=6333, what="COLLECTION"),
    "opensearch": _Scheme(Engine.OPENSEARCH, default_port=9200),
    "opensearch+https": _Scheme(Engine.OPENSEARCH, tls=True, default_port=9200),
    "elasticsearch": _Scheme(Engine.ELASTICSEARCH, default_port=9200),
    "elasticsearch+https": _Scheme(Engine.ELASTICSEARCH, tls=True, default_port=9200),
}


@dataclass(frozen=True)
class Target:
    """A parsed target URI: which engine, where, and the collection or index name.

    ``path`` is set for embedded stores (the storage directory as given), ``host``/``port`` for
    servers; ``name`` is the collection or index (None for ``memory://``).

    Example:
        >>> t = parse_target("opensearch://localhost/docs")
        >>> t.engine.value, t.url, t.name
        ('opensearch', 'http://localhost:9200', 'docs')
    """

    uri: str
    scheme: str
    engine: Engine
    name: str | None = None
    path: str | None = None
    host: str | None = None
    port: int | None = None
    tls: bool = False

    @property
    def embedded(self) -> bool:
        """True for an in-process store (``memory://`` or a storage directory)."""
        return self.engine is Engine.MEMORY or self.path is not None

    @property
    def cluster(self) -> bool:
        """True for an OpenSearch or Elasticsearch index."""
        return self.engine in (Engine.OPENSEARCH, Engine.ELASTICSEARCH)

    @property
    def url(self) -> str | None:
        """``http(s)://host:port`` of a server target; None for embedded ones."""
        if self.host is None:
            return None
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def renamed(self, name: str) -> Target:
        """The same place with another collection or index name (URI included).

        Raises:
            ValueError: The target has no name (``memory://``).
        """
        if self.name is None:
            raise ValueError(f"target {self.uri!r} has no collection or index name")
        return parse_target(self.uri.rstrip("/")[: -len(self.name)] + name)

    def identity(self) -> str:
        """What names this target's data everywhere: scheme, host and port or resolved directory, name.

        Two targets with the same identity hold the same documents (relative directories are
        resolved, so a run started elsewhere is recognised as another target).
        """
        where = os.path.realpath(self.path) if self.path is not None else f"{self.host}:{self.port}"
        if self.engine is Engine.MEMORY:
            where = ""
        return f"{self.scheme}://{where}/{self.name or ''}"


def parse_target(uri: str) -> Target:
    """Parse a target URI (see the module docstring for the schemes).

    Raises:
        ValueError: The URI is malformed or names an unknown scheme.
    """
    if not isinstance(uri, str):
        raise TypeError(f"a target URI must be a string, got {type(uri).__name__}")
    scheme_name, sep, rest = uri.partition("://")
    if not sep:
        raise ValueError(f"target {uri!r} is not a URI like qdrant://host:6333/collection")
    scheme = _SCHEMES.get(scheme_name)
    if scheme is None:
        raise ValueError(f"unknown target scheme {scheme_name!r} in {uri!r} (known: {', '.join(_SCHEMES)})")
    if scheme.engine is Engine.MEMORY:
        if rest.strip("/"):
            raise ValueError(f"target {uri!r} must be just memory://")
        return Target(uri, scheme_name, scheme.engine)
    if scheme.embedded:
        directory, _, name = rest.rstrip("/").rpartition("/")
        if not directory or not name:
            raise ValueError(f"target {uri!r} must be {scheme_name}://DIRECTORY/{scheme.what}")
        return Target(uri, scheme_name, scheme.engine, name=name, path=directory)
    parts = urlsplit(f"http://{rest}")
    name = parts.path.strip("/")
    if not parts.hostname or not name or "/" in name or parts.query or parts.fragment:
        raise ValueError(f"target {uri!r} must be {scheme_name}://HOST:PORT/{scheme.what}")
    try:
        port = parts.port or scheme.default_port
    except ValueError as e:
        raise ValueError(f"target {uri!r} has an invalid port") from e
    return Target(uri, scheme_name, scheme.engine, name=name, host=parts.hostname, port=port, tls=scheme.tls)
