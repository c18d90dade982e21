"""Target URIs: credentials from the user information, one redaction rule, ports, IPv6 hosts."""

from __future__ import annotations

import pickle

import pytest

from sparsebridge.backends.targets import Target, parse_target, redact_uri

SECRET = "pa:ss@w%2Frd"  # ':' and '@' inside, '/' percent-encoded


@pytest.mark.parametrize("scheme", ["opensearch", "opensearch+https", "elasticsearch", "elasticsearch+https"])
def test_user_information_becomes_credentials_and_leaves_the_uri(scheme: str) -> None:
    target = parse_target(f"{scheme}://ad%40min:{SECRET}@db.example:9201/docs")
    assert (target.username, target.password) == ("ad@min", "pa:ss@w/rd")
    assert (target.host, target.port, target.name) == ("db.example", 9201, "docs")
    assert target.uri == f"{scheme}://db.example:9201/docs"
    for shown in (target.uri, repr(target), str(target), target.identity(), str(target.url)):
        assert not any(part in shown for part in ("ss@w", "w/rd", "w%2Frd", "ad@min", "ad%40min")), shown


def test_a_user_without_password_and_an_empty_password() -> None:
    assert (
        parse_target("opensearch://admin@h/x").username,
        parse_target("opensearch://admin@h/x").password,
    ) == (
        "admin",
        None,
    )
    target = parse_target("opensearch://admin:@h/x")
    assert (target.username, target.password) == ("admin", "")
    assert parse_target("opensearch://h/x").username is None


@pytest.mark.parametrize("uri", ["qdrant://s3cret@h/c", "qdrant+https://u:s3cret@h:6334/c"])
def test_qdrant_uris_take_no_user_information(uri: str) -> None:
    with pytest.raises(ValueError, match="api_key") as caught:
        parse_target(uri)
    assert "s3cret" not in str(caught.value)


def test_credentials_beside_the_uri_combine_with_those_in_it() -> None:
    in_uri = parse_target("opensearch://u:s3cret@h/x")
    assert in_uri.with_credentials(username="u", password="s3cret") == in_uri
    assert (in_uri.with_credentials().username, in_uri.with_credentials().password) == ("u", "s3cret")
    user_only = parse_target("opensearch://u@h/x").with_credentials(password="s3cret")
    assert (user_only.username, user_only.password) == ("u", "s3cret")
    bare = parse_target("opensearch://h/x").with_credentials(username="v", password="w")
    assert (bare.username, bare.password) == ("v", "w")
    for given in ({"username": "other"}, {"password": "0ther"}):
        with pytest.raises(ValueError, match="differ") as caught:
            in_uri.with_credentials(**given)
        assert "s3cret" not in str(caught.value) and "0ther" not in str(caught.value)


def test_credentials_do_not_change_which_target_it_is() -> None:
    with_auth = parse_target("opensearch://u:one@h:9200/x")
    assert with_auth == parse_target("opensearch://u:two@h:9200/x") == parse_target("opensearch://h:9200/x")
    assert with_auth.identity() == parse_target("opensearch://h:9200/x").identity()


def test_renamed_keeps_the_credentials() -> None:
    renamed = parse_target("opensearch://u:s3cret@h:9300/docs").renamed("docs-sink")
    assert (renamed.name, renamed.uri, renamed.username, renamed.password) == (
        "docs-sink",
        "opensearch://h:9300/docs-sink",
        "u",
        "s3cret",
    )
    with pytest.raises(ValueError):
        renamed.renamed("a/b")


def test_a_target_crosses_processes_with_its_credentials() -> None:
    target = parse_target("elasticsearch://u:s3cret@h/x")
    again = pickle.loads(pickle.dumps(target))
    assert (again.username, again.password, again.uri) == ("u", "s3cret", "elasticsearch://h/x")


def test_a_target_built_by_hand_cannot_carry_a_secret_in_its_uri() -> None:
    with pytest.raises(ValueError, match="user information") as caught:
        Target("opensearch://u:s3cret@h:9200/x", "opensearch", parse_target("opensearch://h/x").engine)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("opensearch://u:s3cret@h:9200/x", "opensearch://h:9200/x"),
        ("opensearch://s3cret@h/x", "opensearch://h/x"),
        ("postgresql://u:s3cret@h:5432/db", "postgresql://h:5432/db"),
        ("somescheme://u:s3cret@h", "somescheme://h"),
        ("opensearch://u:s3cret@h:0/x", "opensearch://h:0/x"),
        ("opensearch://u:s3/cret@h/x", "opensearch://h/x"),  # a raw '/' in the password
        ("opensearch://h/x?api_key=s3cret&pretty=1", "opensearch://h/x?api_key=***&pretty=1"),
        ("opensearch://h/x?x=1#s3cret", "opensearch://h/x?x=1#***"),
        ("qdrant+edge://./data@home/docs", "qdrant+edge://./data@home/docs"),  # a path, not a user
        ("memory://", "memory://"),
        ("not a uri s3cret", "not a uri s3cret"),
    ],
)
def test_one_redaction_rule(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown


@pytest.mark.parametrize(
    "uri",
    [
        "opensearch://u:s3cret@h:0/x",
        "elasticsearch://u:s3cret@h:65536/x",
        "elasticsearch://u:s3cret@h:99999999/x",
        "opensearch://u:s3cret@h:port/x",
        "opensearch://u:s3cret@h:-1/x",
        "opensearch://u:s3cret@h: 9/x",
        "opensearch://u:s3cret@h:9.2/x",
        "opensearch://u:s3cret@[::1/x",
        "opensearch://u:s3cret@[::1]x/x",
        "opensearch://u:s3cret@/x",
        "opensearch://u:s3cret@h/a/b",
        "opensearch://u:s3cret@h/x?a=1",
    ],
)
def test_invalid_server_uris_are_refused_without_showing_the_secret(uri: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_target(uri)
    assert "s3cret" not in str(caught.value)
    assert "s3cret" not in repr(caught.value)


def test_port_zero_is_not_the_default_port() -> None:
    with pytest.raises(ValueError, match="port"):
        parse_target("opensearch://127.0.0.1:0/idx")
    with pytest.raises(ValueError, match="port"):
        parse_target("qdrant://127.0.0.1:0/docs")


def test_ports_at_the_edges() -> None:
    assert parse_target("opensearch://h:1/x").port == 1
    assert parse_target("opensearch://h:65535/x").port == 65535
    assert parse_target("opensearch://h/x").port == 9200
    assert parse_target("qdrant://h/x").port == 6333


@pytest.mark.parametrize(
    ("uri", "url", "identity"),
    [
        ("opensearch://[::1]:9393/x", "http://[::1]:9393", "opensearch://[::1]:9393/x"),
        (
            "qdrant+https://[2001:DB8::7]/c",
            "https://[2001:db8::7]:6333",
            "qdrant+https://[2001:db8::7]:6333/c",
        ),
        ("elasticsearch://u:p@[fe80::1]:9201/i", "http://[fe80::1]:9201", "elasticsearch://[fe80::1]:9201/i"),
        ("opensearch://127.0.0.1:9200/x", "http://127.0.0.1:9200", "opensearch://127.0.0.1:9200/x"),
    ],
)
def test_ipv6_literal_hosts_keep_their_brackets(uri: str, url: str, identity: str) -> None:
    target = parse_target(uri)
    assert target.url == url
    assert target.identity() == identity
    assert target.host is not None and not target.host.startswith("[")  # the address, brackets only in URLs


def test_ipv6_uri_reaches_the_cluster_url() -> None:
    from sparsebridge.backends import open_backend

    backend = open_backend("opensearch://[::1]:9393/x")
    assert backend.target.url == "http://[::1]:9393"  # type: ignore[attr-defined]


def test_qdrant_edge_storage_options_are_options_not_the_target() -> None:
    plain = parse_target("qdrant+edge://./data/docs")
    cold = parse_target("qdrant+edge://./data/docs?index=cold&payload=cold")
    assert (cold.path, cold.name, plain.options) == ("./data", "docs", ())
    assert cold.options == (("index", "cold"), ("payload", "cold"))
    assert cold.identity() == plain.identity()  # the same shard
    assert cold.renamed("other").uri == "qdrant+edge://./data/other?index=cold&payload=cold"
    for bad in ("index", "index=", "index=cold&index=pinned"):
        with pytest.raises(ValueError, match="option"):
            parse_target(f"qdrant+edge://./data/docs?{bad}")
