"""Extra OpenSearch nodes for tests that need their own (tiny queues, kill/restart)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

SCRIPT = str(Path(__file__).resolve().parents[1] / "scripts" / "opensearch.sh")


@contextmanager
def started_node(
    port: int, run_dir: Path, *, what: str, env: Mapping[str, str] | None = None
) -> Iterator[tuple[str, dict[str, str]]]:
    """Start ``scripts/opensearch.sh`` on ``port`` with its own run dir; yield (url, its env); stop it.

    A node that cannot start fails the test in CI and skips it elsewhere.
    """
    node_env = {
        **os.environ,
        "OPENSEARCH_PORT": str(port),
        "OPENSEARCH_TRANSPORT_PORT": str(port + 100),
        "OPENSEARCH_HOME_RUN": str(run_dir),
        "OPENSEARCH_JAVA_OPTS": "-Xms384m -Xmx384m",
        **(env or {}),
    }
    started = subprocess.run([SCRIPT, "start"], env=node_env, capture_output=True, text=True, timeout=240)
    if started.returncode != 0:
        message = f"could not start the {what} node: {started.stderr[-2000:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield started.stdout.strip().splitlines()[-1], node_env
    finally:
        subprocess.run([SCRIPT, "stop"], env=node_env, capture_output=True, text=True, timeout=120)
