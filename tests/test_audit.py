"""The run-time audit of the consistency guarantee, in both directions, and the exact
behaviour of SSP against a parked worker."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import stalesync as ss
from stalesync.ps.audit import GuaranteeViolation
from stalesync.ps.consistency import ConsistencyModel
from stalesync.ps.server import ServerShard
from stalesync.runtime.ps import ParameterServer

TABLES = [ss.TableSpec("t", 4, 1, "int64")]


def reader(iterations_note=None):
    def worker(ctx):
        while ctx.clock_count < ctx.iterations:
            ctx.read("t")
            ctx.inc("t", [ctx.worker_id], np.ones((1, 1), dtype=np.int64))
            ctx.clock()

    return worker


def parked_run(staleness: int, extra_clocks: int = 2, **options):
    """Worker 1 waits before its first read; worker 0 runs. Worker 1 is released once
    worker 0 is blocked inside a shard read (seen on the shard's condition variable)."""
    release = threading.Event()
    blocked_at: list[int] = []

    def worker(ctx):
        if ctx.worker_id == 1:
            assert release.wait(30), "worker 0 never blocked"
        try:
            while ctx.clock_count < ctx.iterations:
                if ctx.worker_id == 0:
                    blocked_at.append(ctx.clock_count)  # about to read at this clock
                ctx.read("t")
                ctx.inc("t", [ctx.worker_id], np.ones((1, 1), dtype=np.int64))
                ctx.clock()
        finally:  # worker 0 stopped (done or failed) without blocking: let worker 1 go
            release.set()

    def release_when_blocked():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not release.is_set():
            server = ParameterServer.active
            if server is not None and server.groups is not None:
                shard = server.groups.shards.members[0].shard
                if shard._cond._waiters:  # worker 0 is parked in a read
                    release.set()
                    return
            time.sleep(0.001)
        release.set()

    watcher = threading.Thread(target=release_when_blocked, daemon=True)
    watcher.start()
    result = ss.run(worker, TABLES, workers=2, consistency="ssp", staleness=staleness,
                    iterations=staleness + 1 + extra_clocks, **options)
    watcher.join(5)
    return result, blocked_at


@pytest.mark.parametrize("staleness", [0, 1, 2, 4])
def test_ssp_lets_a_worker_run_s_clocks_ahead_of_a_parked_one_and_no_further(staleness):
    result, _ = parked_run(staleness)
    records = {r["iteration"]: r for r in result.record["records"] if r["worker"] == 0}
    # clocks 0..s: nothing to wait for (a read at clock c needs stamp c - s <= 0)
    assert all(records[c]["wait_s"] == 0.0 for c in range(staleness + 1))
    # clock s + 1 needs worker 1's clock 0: worker 0 blocked exactly there
    assert records[staleness + 1]["wait_s"] > 0.0
    g = result.record["guarantee"]
    assert g["violations"] == 0 and g["over_blocked_reads"] == 0
    assert g["reads_checked"] == 2 * (staleness + 3)


def test_audit_catches_a_shard_that_serves_rows_a_clock_too_stale(monkeypatch):
    real = ServerShard.read

    def stale_read(self, worker, table, local_rows, required_stamp, *rest):
        lax = None if required_stamp is None else required_stamp - 1
        return real(self, worker, table, local_rows, lax, *rest)

    monkeypatch.setattr(ServerShard, "read", stale_read)
    result, _ = parked_run(2, audit="record")
    g = result.record["guarantee"]
    assert g["violations"] >= 1 and "stamp" in g["first_problem"]
    with pytest.raises(GuaranteeViolation, match="under bound 2"):
        parked_run(2, audit="error")


def test_audit_catches_a_client_that_blocks_like_bsp_under_ssp(monkeypatch):
    monkeypatch.setattr(ConsistencyModel, "required_stamp", lambda self, clock: clock)
    result, _ = parked_run(2, audit="record")
    g = result.record["guarantee"]
    assert g["over_blocked_reads"] >= 1 and g["violations"] == 0
    assert "waited" in g["first_problem"]


def test_audit_is_in_every_record_and_can_be_switched_off():
    on = ss.run(reader(), TABLES, workers=2, iterations=5, consistency="ssp", staleness=1)
    assert on.record["guarantee"]["reads_checked"] == 10
    assert on.record["guarantee"]["promise"].startswith("ssp: a read at clock c saw")
    off = ss.run(reader(), TABLES, workers=2, iterations=5, audit="off")
    assert off.record["guarantee"]["audit"] == "off"
    with pytest.raises(ss.ConfigError, match="audit must be one of"):
        ss.run(reader(), TABLES, iterations=1, audit="loud")


def test_cli_prints_the_verdict(tmp_path, capsys):
    from lda_fixtures import planted_corpus

    from stalesync.cli import main
    from stalesync.data.writers import write_ldac

    corpus, _ = planted_corpus(num_docs=40, seed=0)
    write_ldac(corpus, tmp_path / "d.ldac")
    assert main(["lda", "--data", str(tmp_path / "d.ldac"), "--topics", "3", "--epochs", "2",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "guarantee held:" in out and "0 violations, 0 over-blocked reads" in out
