"""PostgreSQL fails mid-ingest: connections reset or cut short through the TCP fault proxy (a
commit may have been applied while the client saw an error), and the server killed (SIGKILL of
the postmaster and its processes, a crash) and restarted on its data.

Every run must end with each document stored once with its clean vector, and ``written + stale``
equal to the documents sent (a replayed batch that had committed finds its own run number).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from checker import check
from faultkit import make_documents
from proxy import FaultProxy

from postgres_server import SCRIPT, drop_table, kill_server, new_table, read_postgres, started_server
from sparsebridge.backends import RetryPolicy, open_backend
from sparsebridge.ingest import ingest

RETRY = RetryPolicy(max_attempts=200, initial_wait=0.2, max_wait=2.0, max_total_seconds=120)
COMMIT = "Q\x00\x00\x00\x0bCOMMIT\x00"  # the protocol's simple query message "COMMIT", whole
PORT = int(os.environ.get("POSTGRES_FAULT_PORT", "5441"))


def _verify(url: str, table: str, documents: list[Any], encoder: Any) -> None:
    ids = [d.id for d in documents]
    clean = dict(zip(ids, encoder.encode_documents([d.text for d in documents]), strict=True))
    verdict = check(read_postgres(url, table), sent=ids, acknowledged=ids, expected=clean)
    print(f"\n{verdict}")
    assert verdict.clean and verdict.present == len(documents), verdict


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[FaultProxy]:
    where = urlsplit(postgres_url)
    with FaultProxy(where.hostname or "127.0.0.1", where.port or 5432) as p:
        yield p


@pytest.mark.parametrize("fault", ["reset_connections", "truncate_connections"])
def test_connection_faults_lose_and_duplicate_nothing(
    fault: str, proxy: FaultProxy, postgres_url: str, encoder: Any
) -> None:
    table = new_table("fault_net")
    where = urlsplit(postgres_url)
    through_proxy = f"postgres://{where.netloc.rsplit('@', 1)[0]}@127.0.0.1:{proxy.port}{where.path}/{table}"
    backend = open_backend(through_proxy, retry=RETRY, connect_timeout=5)
    backend.ensure_schema()  # before the faults: they hit the writes
    documents = make_documents(640, seed=31, prefix=fault)
    armed = threading.Event()
    # Truncations cut the upsert's answer (not applied): armed before the first write, the upsert being
    # the only statement naming "INSERT INTO". Resets answer the COMMIT message (applied, the client
    # sees an error): armed once the writes run, so that the ingest's own schema check is past.
    path = COMMIT if fault == "reset_connections" else "INSERT INTO"

    def arm(stats: Any) -> None:
        if not armed.is_set() and (stats is None or stats.written):
            armed.set()
            proxy.faults.path = path
            setattr(proxy.faults, fault, 4)

    if fault == "truncate_connections":
        arm(None)

    try:
        stats = ingest(
            documents,
            encoder=encoder,
            backend=backend,
            batch_size=32,
            writers=2,
            run_number=3,
            on_progress=arm,
        )
        print(f"\n{fault}: injected {dict(proxy.injected)}; retries {stats.retries}, stale {stats.stale}")
        assert proxy.injected[fault] == 4
        assert stats.retries >= 4 * 32, "the faults were not seen by the writers"
        if fault == "reset_connections":  # a replayed batch had committed: its rows come back stale
            assert stats.stale > 0 and stats.stale % 32 == 0
        assert stats.written + stats.stale == len(documents)
        _verify(postgres_url, table, documents, encoder)
    finally:
        backend.close()
        drop_table(postgres_url, table)


def test_server_killed_and_restarted_mid_ingest(encoder: Any, tmp_path: Path) -> None:
    run_dir = tmp_path / "pg"
    with started_server(PORT, run_dir) as (url, env):
        os.environ["PGPASSFILE"], saved = env["PGPASSFILE"], os.environ.get("PGPASSFILE")
        try:
            table = new_table("fault_kill")
            backend = open_backend(f"{url}/{table}", retry=RETRY, connect_timeout=3)
            documents = make_documents(1800, seed=32, prefix="kill")
            outcome: dict[str, Any] = {}

            def run() -> None:
                try:
                    outcome["stats"] = ingest(
                        documents, encoder=encoder, backend=backend, batch_size=32, run_dir=tmp_path / "run"
                    )
                except BaseException as e:
                    outcome["error"] = e

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            _wait_for(tmp_path / "run" / "checkpoint.json", 300, thread)
            kill_server(run_dir)
            time.sleep(1.0)
            restarted = subprocess.run(
                [SCRIPT, "start"], env=env, capture_output=True, text=True, timeout=120
            )
            assert restarted.returncode == 0, restarted.stderr[-2000:]
            thread.join(timeout=240)
            assert not thread.is_alive(), "the ingest hung"
            assert "error" not in outcome, outcome.get("error")
            stats = outcome["stats"]
            print(f"\nretries {stats.retries}, stale {stats.stale}, {stats.elapsed_s:.1f}s")
            assert stats.retries > 0, "the server kill was not noticed: the fault was not produced"
            assert stats.written + stats.stale == len(documents)
            _verify(url, table, documents, encoder)
            backend.close()
        finally:
            if saved is None:
                os.environ.pop("PGPASSFILE", None)
            else:
                os.environ["PGPASSFILE"] = saved


def _wait_for(checkpoint: Path, at_least: int, thread: threading.Thread) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and thread.is_alive():
        try:
            if json.loads(checkpoint.read_text())["position"] >= at_least:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"the ingest did not reach {at_least} items")
