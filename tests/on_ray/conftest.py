"""One local Ray cluster for every Ray test of the session (a Ray start costs seconds)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """A local cluster with 4 logical CPUs (a re-run task then never waits for a free CPU on a
    2-core machine), no dashboard; yields its address for drivers in child processes."""
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
