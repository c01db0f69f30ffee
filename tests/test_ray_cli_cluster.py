"""A cluster started the way a user starts one: ``ray start --head`` and ``ray start
--address`` (each node its own raylet and object store) with Ray's token authentication,
and a job run on it with ``stalesync ... --runtime ray --address``.

Ray binds a cluster it starts with ``ray start`` to the machine's address even when given
127.0.0.1 (it refuses multi-node clusters on loopback), so this test is slow-marked and
guarded by a token of its own.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from lda_fixtures import planted_corpus

from stalesync.data.writers import write_ldac

pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.ray]

RAY = shutil.which("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def user_cluster(tmp_path):
    """Two nodes started by ``ray start``; yields (address, environment)."""
    if RAY is None:
        pytest.skip("the ray command is not installed")
    token = tmp_path / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    short = tempfile.mkdtemp(prefix="ss-", dir="/tmp")  # Ray's socket paths must be short
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "RAY_TMPDIR": short}
    address = f"127.0.0.1:{free_port()}"
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    try:
        subprocess.run([RAY, "start", "--head", "--port", address.split(":")[1],
                        "--node-ip-address", "127.0.0.1", "--include-dashboard", "false",
                        *common], env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([RAY, "start", "--address", address, *common], env=env, check=True,
                       capture_output=True, timeout=120)
        yield address, env
    finally:
        stop_cluster(short, address)
        shutil.rmtree(short, ignore_errors=True)


def stop_cluster(tmpdir: str, address: str) -> None:
    """Kill this cluster's processes only (``ray stop`` would kill every Ray on the
    machine, the test session's own included): those started with its temp directory or
    its port, and their children."""
    import psutil

    port = ":" + address.split(":")[1]
    started = [p for p in psutil.process_iter(["cmdline"])
               if any(tmpdir in a or port in a for a in (p.info["cmdline"] or []))]
    everything = set(started)
    for proc in started:
        try:
            everything.update(proc.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    for proc in everything:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(list(everything), timeout=30)


def test_a_job_on_a_cluster_started_with_ray_start(user_cluster, tmp_path):
    address, env = user_cluster
    corpus, _ = planted_corpus(num_docs=120, seed=3)
    data = tmp_path / "docs.ldac"
    write_ldac(corpus, data)
    run_json, model_dir = tmp_path / "run.json", tmp_path / "model"
    done = subprocess.run(
        [sys.executable, "-m", "stalesync.cli", "lda", "--data", str(data), "--topics", "4",
         "--epochs", "6", "--workers", "2", "--consistency", "ssp", "--staleness", "1",
         "--runtime", "ray", "--address", address, "--metrics-out", str(run_json),
         "--save-model", str(model_dir), "--no-progress"],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(run_json.read_text())
    assert record["runtime"] == "ray"
    # one host per node: the two workers were placed on the two nodes
    [placement] = record["membership"]
    assert placement["nodes"] == 2 and len(set(placement["worker_nodes"])) == 2
    assert "0 violations" in done.stdout
    from stalesync.apps.lda import LDA

    model = LDA.load(model_dir)
    counts = np.asarray(model.word_topic_.sum(axis=1)).ravel()  # exact: every token once
    np.testing.assert_array_equal(counts, np.bincount(corpus.words,
                                                      minlength=corpus.num_words))


def test_a_missing_token_is_named_in_one_line(user_cluster, tmp_path):
    """The cluster runs with token authentication; a driver without the token gets one
    line that says so and where the token goes (Ray's own: 20 s of retries, then a page)."""
    address, env = user_cluster
    wrong = tmp_path / "other-token"
    wrong.write_text(secrets.token_hex(32))
    corpus, _ = planted_corpus(num_docs=20, seed=4)
    data = tmp_path / "docs.ldac"
    write_ldac(corpus, data)
    done = subprocess.run(
        [sys.executable, "-m", "stalesync.cli", "lda", "--data", str(data), "--runtime", "ray",
         "--address", address, "--no-progress"],
        env={**env, "RAY_AUTH_TOKEN_PATH": str(wrong)}, capture_output=True, text=True,
        timeout=300, cwd=tmp_path)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert "authentication token" in last and "RAY_AUTH_TOKEN_PATH" in last, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
