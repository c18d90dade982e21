"""Extra Elasticsearch nodes for tests that need their own (tiny queues)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

SCRIPT = str(Path(__file__).resolve().parents[1] / "scripts" / "elasticsearch.sh")


@contextmanager
def started_es_node(
    port: int, run_dir: Path, *, what: str, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Start ``scripts/elasticsearch.sh`` on ``port`` with its own run dir; yield its url; stop it.

    A node that cannot start fails the test in CI and skips it elsewhere.
    """
    node_env = {
        **os.environ,
        "ELASTICSEARCH_PORT": str(port),
        "ELASTICSEARCH_TRANSPORT_PORT": str(port + 100),
        "ELASTICSEARCH_HOME_RUN": str(run_dir),
        "ELASTICSEARCH_JAVA_OPTS": "-Xms384m -Xmx384m",
        **(env or {}),
    }
    started = subprocess.run([SCRIPT, "start"], env=node_env, capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        message = f"could not start the {what} Elasticsearch node: {started.stderr[-2000:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([SCRIPT, "stop"], env=node_env, capture_output=True, text=True, timeout=120)
