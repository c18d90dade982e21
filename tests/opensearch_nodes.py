"""Extra OpenSearch or Elasticsearch nodes for tests that need their own (tiny queues, kill/restart)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
SCRIPT = str(SCRIPTS / "opensearch.sh")


@contextmanager
def started_node(
    port: int,
    run_dir: Path,
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    engine: str = "opensearch",
) -> Iterator[tuple[str, dict[str, str]]]:
    """Start ``scripts/<engine>.sh`` on ``port`` with its own run dir; yield (url, its env); stop it.

    A node that cannot start fails the test in CI and skips it elsewhere.
    """
    script = str(SCRIPTS / f"{engine}.sh")
    prefix = engine.upper()  # the scripts' environment: OPENSEARCH_PORT, ELASTICSEARCH_PORT, ...
    node_env = {
        **os.environ,
        f"{prefix}_PORT": str(port),
        f"{prefix}_TRANSPORT_PORT": str(port + 100),
        f"{prefix}_HOME_RUN": str(run_dir),
        f"{prefix}_JAVA_OPTS": "-Xms384m -Xmx384m",
        **(env or {}),
    }
    started = subprocess.run([script, "start"], env=node_env, capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        message = f"could not start the {what} {engine} node: {started.stderr[-2000:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield started.stdout.strip().splitlines()[-1], node_env
    finally:
        subprocess.run([script, "stop"], env=node_env, capture_output=True, text=True, timeout=120)
