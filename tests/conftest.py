"""Shared fixtures. ``ray_cluster``: one local Ray session for every test that needs Ray."""

from __future__ import annotations

import os

import pytest

# the run-time audit of the consistency guarantee raises on the first violation in tests
os.environ.setdefault("STALESYNC_AUDIT", "error")


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray session for the whole test run (no dashboard), with fast failure
    detection so recovery tests take seconds. ``Cluster`` picks the machine's address
    itself; the runtime's own local start uses loopback. Modules whose functions Ray's
    worker processes cannot import register themselves with
    ``ray.cloudpickle.register_pickle_by_value``."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 6,
            "include_dashboard": False,
            "_system_config": {"health_check_period_ms": 500,
                               "health_check_failure_threshold": 4},
        },
    )
    ray.init(address=cluster.address, include_dashboard=False, logging_level="WARNING")
    yield cluster
    ray.shutdown()
    cluster.shutdown()
