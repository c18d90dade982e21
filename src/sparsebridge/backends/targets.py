"""Target URIs, parsed in one place into a typed :class:`Target`.

- ``qdrant+edge://PATH/COLLECTION``: Qdrant Edge in this process, the shard directory
  ``PATH/COLLECTION`` (the default). Storage options may follow as a query,
  ``qdrant+edge://PATH/COLLECTION?index=cold&payload=cold``: they become :attr:`Target.options`,
  which the Qdrant Edge backend validates (:class:`~sparsebridge.backends.qdrant.storage.EdgeStorage`);
  they are not part of which target it is (:meth:`Target.identity`).
- ``qdrant+local://PATH/COLLECTION``: qdrant-client's local mode storing in directory ``PATH``.
- ``qdrant://HOST:PORT/COLLECTION`` (``qdrant+https://`` for TLS): a Qdrant server; default port 6333.
- ``opensearch://HOST:PORT/INDEX`` (``opensearch+https://`` for TLS): an OpenSearch index
  (``rank_features``); default port 9200.
- ``elasticsearch://HOST:PORT/INDEX`` (``elasticsearch+https://`` for TLS): an Elasticsearch index
  (``sparse_vector`` from 8.15 on, else ``rank_features``); default port 9200.
- ``postgres://USER@HOST:PORT/DB/TABLE`` (also ``postgresql://``): a PostgreSQL table with pgvector;
  default port 5432; the user and password, when not in the URI, come from libpq (``PG*``, ``.pgpass``).
- ``memory://``: the exact in-memory reference (lives only as long as the process).

Targets of engines with users (OpenSearch, Elasticsearch, PostgreSQL) may carry credentials in
their user information, percent-encoded as in any URI: ``opensearch://USER:PASSWORD@HOST:PORT/INDEX``.
A ``qdrant://`` URI with user information is refused (a Qdrant server takes an API key, given
beside the URI). Credentials become :attr:`Target.username` and :attr:`Target.password` and
nothing else: :attr:`Target.uri`, ``repr`` and :meth:`Target.identity`
never hold them, and two targets that differ only in credentials are equal.

One redaction rule, :func:`redact_uri`, says how any target URI is shown (messages, progress,
stats, checkpoints, benchmark records, logs, connector serialisation): the user information is
dropped entirely (user name included), the values of secret-looking query options
(``password``, ``token``, ``api_key``, ...) and any fragment become ``***``. Storage paths of
embedded stores are shown as given.

Everything else (the CLI, checkpoints, :func:`~sparsebridge.backends.open_backend`) reads the
parsed fields; nobody looks at the URI string again.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, replace
from enum import Enum
from urllib.parse import unquote

__all__ = ["Engine", "Target", "parse_target", "redact_uri"]


class Engine(str, Enum):
    """The engine a target lives in."""

    MEMORY = "memory"
    QDRANT = "qdrant"
    QDRANT_EDGE = "qdrant-edge"
    OPENSEARCH = "opensearch"
    ELASTICSEARCH = "elasticsearch"
    POSTGRES = "postgres"


@dataclass(frozen=True)
class _Scheme:
    engine: Engine
    tls: bool = False
    embedded: bool = False
    default_port: int | None = None
    what: str = "INDEX"
    credentials: bool = True  # False: the engine has no user/password (Qdrant takes an API key)


_SCHEMES = {
    "memory": _Scheme(Engine.MEMORY),
    "qdrant+local": _Scheme(Engine.QDRANT, embedded=True, what="COLLECTION"),
    "qdrant+edge": _Scheme(Engine.QDRANT_EDGE, embedded=True, what="COLLECTION"),
    "qdrant": _Scheme(Engine.QDRANT, default_port=6333, what="COLLECTION", credentials=False),
    "qdrant+https": _Scheme(Engine.QDRANT, tls=True, default_port=6333, what="COLLECTION", credentials=False),
    "opensearch": _Scheme(Engine.OPENSEARCH, default_port=9200),
    "opensearch+https": _Scheme(Engine.OPENSEARCH, tls=True, default_port=9200),
    "elasticsearch": _Scheme(Engine.ELASTICSEARCH, default_port=9200),
    "elasticsearch+https": _Scheme(Engine.ELASTICSEARCH, tls=True, default_port=9200),
    "postgres": _Scheme(Engine.POSTGRES, default_port=5432, what="DATABASE/TABLE"),
    "postgresql": _Scheme(Engine.POSTGRES, default_port=5432, what="DATABASE/TABLE"),
}


_SECRET_OPTION = re.compile(r"pass|secret|token|key|auth|cred|sig", re.IGNORECASE)


def redact_uri(uri: str) -> str:
    """How a target URI is shown anywhere a person or a log can read it.

    Drops the user information (``user:password@``, user name included) of any URI that is not a
    storage path, shows the values of secret-looking query options and any fragment as ``***``,
    and leaves everything else as given. Everything up to the last ``@`` before the query is taken
    for user information, so a password holding an unencoded ``/`` is hidden too.

    Example:
        >>> redact_uri("opensearch://admin:s3cret@db.example:9200/docs")
        'opensearch://db.example:9200/docs'
        >>> redact_uri("qdrant+edge://./data/docs")
        'qdrant+edge://./data/docs'
    """
    scheme_name, sep, rest = uri.partition("://")
    scheme = _SCHEMES.get(scheme_name)
    if not sep or (scheme is not None and scheme.embedded):
        return uri
    rest, hashmark, _ = rest.partition("#")
    rest, question, query = rest.partition("?")
    rest = rest.rpartition("@")[2]
    if question:
        options = (option.partition("=") for option in query.split("&"))
        query = "&".join(
            f"{key}={'***' if _SECRET_OPTION.search(key) else value}" if eq else key
            for key, eq, value in options
        )
    return f"{scheme_name}://{rest}{question}{query}{hashmark}{'***' if hashmark else ''}"


@dataclass(frozen=True)
class Target:
    """A parsed target URI: which engine, where, the collection or index name, and credentials.

    ``path`` is set for embedded stores (the storage directory as given), ``host``/``port`` for
    servers (``host`` an IPv6 address without brackets, which :attr:`url` adds); ``name`` is the
    collection or index (None for ``memory://``). ``uri`` is the URI as :func:`redact_uri` shows
    it; ``username``/``password`` come from the URI's user information and appear in no ``repr``,
    comparison or identity.

    Example:
        >>> t = parse_target("opensearch://admin:s3cret@localhost/docs")
        >>> t.engine.value, t.url, t.name, t.uri, t.username
        ('opensearch', 'http://localhost:9200', 'docs', 'opensearch://localhost/docs', 'admin')
    """

    uri: str
    scheme: str
    engine: Engine
    name: str | None = None
    path: str | None = None
    host: str | None = None
    port: int | None = None
    tls: bool = False
    database: str | None = None
    username: str | None = field(default=None, repr=False, compare=False)
    password: str | None = field(default=None, repr=False, compare=False)
    options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if redact_uri(self.uri) != self.uri:
            raise ValueError("a Target's uri holds no user information or secret: build it with parse_target")

    @property
    def embedded(self) -> bool:
        """True for an in-process store (``memory://`` or a storage directory)."""
        return self.engine is Engine.MEMORY or self.path is not None

    @property
    def cluster(self) -> bool:
        """True for an OpenSearch or Elasticsearch index."""
        return self.engine in (Engine.OPENSEARCH, Engine.ELASTICSEARCH)

    @property
    def address(self) -> str | None:
        """``host:port`` of a server target (``[host]:port`` for IPv6); None for embedded ones."""
        if self.host is None:
            return None
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str | None:
        """``http(s)://host:port`` of a server target; None for embedded ones."""
        if self.address is None:
            return None
        return f"{'https' if self.tls else 'http'}://{self.address}"

    def renamed(self, name: str) -> Target:
        """The same place and credentials with another collection or index name (URI included).

        Raises:
            ValueError: The target has no name (``memory://``), or ``name`` is not a valid one.
        """
        if self.name is None:
            raise ValueError(f"target {self.uri!r} has no collection or index name")
        base, question, query = self.uri.partition("?")
        again = parse_target(base.rstrip("/")[: -len(self.name)] + name + question + query)
        return replace(again, username=self.username, password=self.password)

    def with_credentials(self, *, username: str | None = None, password: str | None = None) -> Target:
        """This target with credentials given beside its URI: each one comes from either place.

        Raises:
            ValueError: The URI and the argument both give a user name (or a password) and they
                differ (the message shows neither).
        """
        for what, from_uri, given in (
            ("username", self.username, username),
            ("password", self.password, password),
        ):
            if from_uri is not None and given is not None and from_uri != given:
                raise ValueError(
                    f"target {self.uri!r}: the URI's user information and {what}= give different "
                    f"{what}s: give it in one place"
                )
        return replace(
            self,
            username=self.username if self.username is not None else username,
            password=self.password if self.password is not None else password,
        )

    def identity(self) -> str:
        """What names this target's data everywhere: scheme, host and port or resolved directory, name.

        Two targets with the same identity hold the same documents (relative directories are
        resolved, so a run started elsewhere is recognised as another target). Credentials are
        never part of it.
        """
        where = os.path.realpath(self.path) if self.path is not None else (self.address or "")
        if self.database is not None:
            where = f"{where}/{self.database}"
        return f"{self.scheme}://{where}/{self.name or ''}"


def parse_target(uri: str) -> Target:
    """Parse a target URI (see the module docstring for the schemes).

    Raises:
        ValueError: The URI is malformed, names an unknown scheme, or has an invalid port
            (0, above 65535, not a number) or host. The message shows the URI redacted.
    """
    if not isinstance(uri, str):
        raise TypeError(f"a target URI must be a string, got {type(uri).__name__}")
    shown = redact_uri(uri)
    scheme_name, sep, rest = uri.partition("://")
    if not sep:
        raise ValueError(f"target {shown!r} is not a URI like qdrant://host:6333/collection")
    scheme = _SCHEMES.get(scheme_name)
    if scheme is None:
        raise ValueError(f"unknown target scheme {scheme_name!r} in {shown!r} (known: {', '.join(_SCHEMES)})")
    if scheme.engine is Engine.MEMORY:
        if rest.strip("/"):
            raise ValueError(f"target {shown!r} must be just memory://")
        return Target(uri, scheme_name, scheme.engine)
    if scheme.embedded:
        options: tuple[tuple[str, str], ...] = ()
        if scheme.engine is Engine.QDRANT_EDGE:
            rest, options = _query_options(rest, shown)
        directory, _, name = rest.rstrip("/").rpartition("/")
        if not directory or not name:
            raise ValueError(f"target {shown!r} must be {scheme_name}://DIRECTORY/{scheme.what}")
        return Target(uri, scheme_name, scheme.engine, name=name, path=directory, options=options)
    authority, slash, path = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    database = None
    if scheme.engine is Engine.POSTGRES:  # postgres://HOST:PORT/DATABASE/TABLE
        database, _, path = path.partition("/")
        if not database or any(c in database for c in "?#@"):
            raise ValueError(f"target {shown!r} must be {scheme_name}://HOST:PORT/{scheme.what}")
    name = path.strip("/")
    if not slash or not name or any(c in path for c in "/?#@"):
        raise ValueError(f"target {shown!r} must be {scheme_name}://HOST:PORT/{scheme.what}")
    host, port = _host_port(hostport, scheme.default_port, shown)
    username = password = None
    if at and not scheme.credentials:
        raise ValueError(
            f"target {shown!r}: {scheme_name}:// takes no user information; give a Qdrant API key "
            "as api_key= (--api-key on the command line)"
        )
    if at:
        user, colon, secret = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(secret) if colon else None
    return Target(
        shown,
        scheme_name,
        scheme.engine,
        name=name,
        host=host,
        port=port,
        tls=scheme.tls,
        database=database,
        username=username,
        password=password,
    )


def _query_options(rest: str, shown: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``PATH?key=value&...`` read into (PATH, the options in order); each key given once."""
    rest, question, query = rest.partition("?")
    if not question:
        return rest, ()
    options: dict[str, str] = {}
    for option in query.split("&"):
        key, eq, value = option.partition("=")
        if not key or not eq or not value:
            raise ValueError(f"target {shown!r}: the option {option!r} is not key=value")
        if key in options:
            raise ValueError(f"target {shown!r}: the option {key!r} is given twice")
        options[key] = unquote(value)
    return rest, tuple(options.items())


def _host_port(hostport: str, default_port: int | None, shown: str) -> tuple[str, int | None]:
    """``HOST[:PORT]`` or ``[IPV6]:PORT`` read into (lowercase host without brackets, port)."""
    if hostport.startswith("["):
        host, bracket, after = hostport[1:].partition("]")
        try:
            valid = bool(bracket) and ipaddress.ip_address(host).version == 6
        except ValueError:
            valid = False
        if not valid or (after and not after.startswith(":")):
            raise ValueError(f"target {shown!r} has an invalid IPv6 host (write it as [::1]:9200)")
        port_text = after[1:] if after else ""
    else:
        host, _, port_text = hostport.partition(":")
        if ":" in port_text:
            raise ValueError(f"target {shown!r} has an IPv6 host without brackets (write [::1]:9200)")
    if not host:
        raise ValueError(f"target {shown!r} has no host")
    if not port_text:
        return host.lower(), default_port
    if not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
        raise ValueError(f"target {shown!r} has an invalid port {port_text!r} (1 to 65535)")
    return host.lower(), int(port_text)
