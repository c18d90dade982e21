"""The PostgreSQL server of the tests (``scripts/postgres.sh``): its URI, a fixture, extra servers.

``POSTGRES_URL`` (exported by ``scripts/postgres.sh run``) is the URI prefix of the test database,
``postgres://sparsebridge@127.0.0.1:5440/sparsebridge``; a target adds ``/TABLE``. The password
comes from the file ``PGPASSFILE`` names (libpq reads it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

SCRIPT = str(Path(__file__).resolve().parents[1] / "scripts" / "postgres.sh")
DEFAULT_URL = "postgres://sparsebridge@127.0.0.1:5440/sparsebridge"


def server_url() -> str:
    """The test server's URI prefix, checked: a failure in CI when it is not there, a skip elsewhere."""
    import psycopg

    url = os.environ.get("POSTGRES_URL", DEFAULT_URL).rstrip("/")
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        message = f"no PostgreSQL at {url} ({e}); start one with scripts/postgres.sh start"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


def new_table(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def drop_table(url: str, table: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP TABLE IF EXISTS "{table}"')


def read_postgres(url: str, table: str) -> dict[str, list[dict[int, float]]]:
    """Every row of ``table``: id -> the stored sparse vectors (one per row: a duplicate shows as two)."""
    import psycopg

    from sparsebridge.backends.postgres.sql import parse_sparsevec

    stored: dict[str, list[dict[int, float]]] = defaultdict(list)
    with psycopg.connect(url) as conn:
        for document_id, data in conn.execute(f'SELECT id, sparse FROM "{table}"', binary=True):
            stored[document_id].append(parse_sparsevec(data).as_dict())
    return dict(stored)


@contextmanager
def started_server(port: int, run_dir: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A server of its own (``port``, ``run_dir``) that a test may kill; yields (URI prefix, its env)."""
    env = {**os.environ, "POSTGRES_PORT": str(port), "POSTGRES_HOME_RUN": str(run_dir)}
    started = subprocess.run([SCRIPT, "start"], env=env, capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        message = f"could not start a PostgreSQL on port {port}: {started.stderr[-2000:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env["PGPASSFILE"] = str(run_dir / "pgpass")
    try:
        yield started.stdout.strip().splitlines()[-1], env
    finally:
        subprocess.run([SCRIPT, "stop"], env=env, capture_output=True, text=True, timeout=120)


def kill_server(run_dir: Path) -> None:
    """SIGKILL the postmaster and every process it started (a crash: nothing is flushed or closed)."""
    pid = int((run_dir / "data" / "postmaster.pid").read_text().split()[0])
    children = [p for p in _processes() if p.get("PPid") == str(pid)]
    for victim in [pid, *(int(p["Pid"]) for p in children)]:
        with suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(int(p["Pid"])) for p in children) | _alive(pid):
        time.sleep(0.05)


def _processes() -> list[Mapping[str, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines = (entry / "status").read_text().splitlines()
            except OSError:
                continue
            found.append(dict(line.split(":\t", 1) for line in lines if ":\t" in line))
    return [{k: v.strip() for k, v in p.items()} for p in found]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def target(url: str, table: str) -> str:
    """The target URI of ``table`` in the test database."""
    return f"{url}/{table}"


def connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)
