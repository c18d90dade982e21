"""Where an OpenSearch or Elasticsearch index lives and how to connect to it; no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from sparsebridge.backends.targets import Engine, Target

__all__ = ["ClusterTarget", "cluster_location"]

# Lowercase; no \ / * ? " < > | space , # :; not starting with - _ +; not . or ..
_INDEX_NAME = re.compile(r"^(?!\.{1,2}$)[a-z0-9.][a-z0-9._-]{0,254}$")


@dataclass(frozen=True)
class ClusterTarget:
    """An index on an OpenSearch or Elasticsearch cluster, and how to connect to it.

    ``url`` is ``http(s)://host:port``; ``username``/``password`` for basic auth (both or neither);
    ``ca_certs`` a CA bundle path for TLS; ``verify_certs=False`` turns certificate checks off.
    """

    index: str
    url: str
    username: str | None = None
    password: str | None = None
    api_key: str | None = None
    ca_certs: str | None = None
    verify_certs: bool = True

    def __post_init__(self) -> None:
        if not _INDEX_NAME.match(self.index):
            raise ValueError(
                f"invalid index name {self.index!r} (lowercase letters, digits, '.', '_', '-'; "
                "not starting with '_' or '-')"
            )
        if not re.match(r"^https?://[^/\s]+$", self.url):
            raise ValueError(f"url must be http(s)://host:port, got {self.url!r}")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        if self.api_key is not None and self.username is not None:
            raise ValueError("give an API key or a username/password, not both")
        if (self.ca_certs is not None or not self.verify_certs) and not self.url.startswith("https://"):
            raise ValueError("ca_certs and verify_certs apply to https:// targets only")

    def __repr__(self) -> str:  # never print secrets
        auth = "basic" if self.username else "api_key" if self.api_key else "none"
        return f"ClusterTarget(index={self.index!r}, url={self.url!r}, auth={auth})"


def cluster_location(engine: Engine, target: ClusterTarget) -> Target:
    """The parsed :class:`~sparsebridge.backends.targets.Target` of ``target`` on ``engine``.

    A URL without a port names the scheme's port (80 or 443), as the URL itself does.

    Example:
        >>> cluster_location(Engine.OPENSEARCH, ClusterTarget("docs", url="https://db:9201")).uri
        'opensearch+https://db:9201/docs'
    """
    parts = urlsplit(target.url)
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    host = parts.hostname or ""
    scheme = f"{engine.value}+https" if tls else engine.value
    where = f"[{host}]" if ":" in host else host
    return Target(
        f"{scheme}://{where}:{port}/{target.index}",
        scheme,
        engine,
        name=target.index,
        host=host,
        port=port,
        tls=tls,
    )
