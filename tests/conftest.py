"""Shared fixtures. ``ray_cluster``: one local Ray session for every test that needs Ray."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

# the run-time audit of the consistency guarantee raises on the first violation in tests
os.environ.setdefault("STALESYNC_AUDIT", "error")

_EXIT_STATUS = {"value": 0}
STRAY_THREAD_GRACE_S = 10.0


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS["value"] = int(exitstatus)


def pytest_unconfigure(config):
    """A non-daemon thread left blocked by a failed test would keep the interpreter alive
    after the report (CI then hits its time limit instead of showing the failure): give
    such threads a grace period, then leave without them."""
    deadline = time.monotonic() + STRAY_THREAD_GRACE_S
    for t in threading.enumerate():
        if t is not threading.main_thread() and not t.daemon:
            t.join(max(0.0, deadline - time.monotonic()))
    stray = [t.name for t in threading.enumerate()
             if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if stray:
        sys.stderr.write(f"conftest: {len(stray)} non-daemon thread(s) still blocked at exit "
                         f"({', '.join(stray[:5])}); exiting without them\n")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS["value"] or 1)


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
