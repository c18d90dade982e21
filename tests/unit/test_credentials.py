"""Credentials given in a target URI are used or refused, never dropped, and never shown.

The transport checks run :mod:`auth_recorder`: what the engine's client really sends.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from auth_recorder import AuthRecorder, recording
from sparsebridge.backends import ElasticsearchBackend, OpenSearchBackend, open_backend

PASSWORD = "pa:ss@w/rd"
ENCODED = "pa%3Ass%40w%2Frd"


@pytest.fixture
def recorder() -> Iterator[AuthRecorder]:
    with recording(200) as server:
        yield server


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("scheme", ["opensearch", "elasticsearch"])
def test_credentials_in_the_uri_reach_the_server(recorder: AuthRecorder, scheme: str) -> None:
    with open_backend(f"{scheme}://admin:{ENCODED}@{recorder.address}/docs") as backend:
        assert isinstance(backend, (OpenSearchBackend, ElasticsearchBackend))
        assert backend.count() == 0
    assert recorder.authorization and set(recorder.authorization) == {basic("admin", PASSWORD)}


def test_a_password_beside_a_user_in_the_uri_reaches_the_server(recorder: AuthRecorder) -> None:
    with open_backend(f"opensearch://admin@{recorder.address}/docs", password=PASSWORD) as backend:
        backend.count()
    assert set(recorder.authorization) == {basic("admin", PASSWORD)}


def test_no_credentials_send_no_authorization(recorder: AuthRecorder) -> None:
    with open_backend(f"opensearch://{recorder.address}/docs") as backend:
        backend.count()
    assert recorder.authorization and set(recorder.authorization) == {None}


def test_credentials_that_disagree_are_refused() -> None:
    with pytest.raises(ValueError, match="differ") as caught:
        open_backend(f"opensearch://admin:{ENCODED}@h/docs", password="other")
    assert PASSWORD not in str(caught.value) and "other" not in str(caught.value)
    with pytest.raises(ValueError, match="username"):
        open_backend("opensearch://admin@h/docs")  # a user without a password is not sent half-way


def test_a_qdrant_uri_with_user_information_is_refused() -> None:
    with pytest.raises(ValueError, match="api_key") as caught:
        open_backend(f"qdrant://{ENCODED}@h/docs")
    assert ENCODED not in str(caught.value)


def test_the_backend_shows_no_credentials() -> None:
    backend = open_backend(f"elasticsearch://admin:{ENCODED}@h/docs")
    assert backend.target.username == "admin"  # type: ignore[attr-defined]
    assert PASSWORD not in repr(backend.target)  # type: ignore[attr-defined]
    assert PASSWORD not in repr(backend) and ENCODED not in repr(backend)
