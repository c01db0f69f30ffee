"""Consistent snapshots: the format (npz + JSON, atomic), and snapshot/resume on embedded."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from guarantee_checker import TABLE, Scenario, exact_sum_violations, run_scenario, violations

import stalesync as ss
from stalesync.cli import build_parser
from stalesync.errors import ConfigError
from stalesync.persist.snapshot import (
    SnapshotError,
    WorkerState,
    check_compatible,
    latest_snapshot,
    list_snapshots,
    load_snapshot,
    validate_state,
    write_snapshot,
)


def _state(clock: int, value: float) -> WorkerState:
    rng = np.random.default_rng(3)
    rng.random(5)
    return WorkerState(clock=clock, arrays={"z": np.full(3, value), "ids": np.arange(4)},
                       rng_state=rng.bit_generator.state,
                       metrics={"records": [{"iteration": 0, "time_s": 0.5}],
                                "staleness_counts": [3, 1], "reads_blocked": 2,
                                "bytes_sent": np.int64(77)})


def test_round_trip_keeps_tables_states_and_generator(tmp_path):
    tables = {"file": np.arange(6, dtype=np.int64).reshape(3, 2), "w b": np.ones((2, 1))}
    path = write_snapshot(tmp_path, 4, tables, [_state(4, 1.5), _state(4, 2.5)], {"x": 1})
    assert path.name == "snap-00000004"
    snap = load_snapshot(tmp_path)
    assert snap.clock == 4 and snap.meta["x"] == 1 and snap.meta["workers"] == 2
    for name, values in tables.items():
        np.testing.assert_array_equal(snap.tables[name], values)
        assert snap.tables[name].dtype == values.dtype
    np.testing.assert_array_equal(snap.workers[1].arrays["z"], np.full(3, 2.5))
    assert snap.workers[0].metrics["bytes_sent"] == 77
    restored = np.random.default_rng(0)
    restored.bit_generator.state = snap.workers[0].rng_state
    expected = np.random.default_rng(3)
    expected.random(5)
    assert restored.random() == expected.random()
    # only safe formats on disk
    assert sorted(os.listdir(path)) == ["meta.json", "tables.npz", "worker-0000.json",
                                        "worker-0000.npz", "worker-0001.json",
                                        "worker-0001.npz"]
    json.loads((path / "meta.json").read_text())


def test_incomplete_snapshots_are_ignored_and_old_ones_pruned(tmp_path):
    for clock in (2, 4, 6):
        write_snapshot(tmp_path, clock, {"t": np.full((1, 1), clock)}, [_state(clock, 0)])
    assert [c for c, _ in list_snapshots(tmp_path)] == [4, 6]  # keep=2
    # a crash while writing clock 8 leaves a temp dir; a dir without meta.json is not complete
    (tmp_path / ".snap-00000008.abc.tmp").mkdir()
    (tmp_path / ".snap-00000008.abc.tmp" / "tables.npz").write_bytes(b"partial")
    (tmp_path / "snap-00000010").mkdir()
    assert latest_snapshot(tmp_path).name == "snap-00000006"
    assert load_snapshot(tmp_path).tables["t"][0, 0] == 6
    assert load_snapshot(tmp_path / "snap-00000004").clock == 4


def test_pickled_content_is_refused(tmp_path):
    path = write_snapshot(tmp_path, 1, {"t": np.zeros((1, 1))}, [_state(1, 0)])
    with open(path / "worker-0000.npz", "wb") as f:
        np.savez(f, evil=np.array([{"a": 1}], dtype=object))
    with pytest.raises(SnapshotError, match="cannot read snapshot"):
        load_snapshot(tmp_path)


def test_missing_snapshot_and_mismatched_job_are_clear_errors(tmp_path):
    with pytest.raises(SnapshotError, match="no complete snapshot"):
        load_snapshot(tmp_path)
    write_snapshot(tmp_path, 2, {"t": np.zeros((3, 2))}, [_state(2, 0)])
    snap = load_snapshot(tmp_path)
    with pytest.raises(SnapshotError, match="1 workers, the job has 2"):
        check_compatible(snap, {"t": ss.TableSpec("t", 3, 2)}, 2)
    with pytest.raises(SnapshotError, match=r"table 't' is float64\[3, 2\]"):
        check_compatible(snap, {"t": ss.TableSpec("t", 4, 2)}, 1)
    with pytest.raises(SnapshotError, match="has tables"):
        check_compatible(snap, {"u": ss.TableSpec("u", 3, 2)}, 1)


def test_state_must_be_plain_arrays():
    with pytest.raises(ConfigError, match="only numeric"):
        validate_state({"x": np.array([object()])})
    with pytest.raises(ConfigError, match="identifier"):
        validate_state({"not ok": np.zeros(1)})
    with pytest.raises(ConfigError, match="dict of arrays"):
        validate_state([1, 2])
    out = validate_state({"a": [1, 2], "b": 3.0})
    assert out["a"].dtype.kind == "i" and out["b"].shape == ()


# -- embedded runtime ------------------------------------------------------------------------
def det_worker(ctx: ss.WorkerContext):
    """Deterministic under BSP: increments depend on the rng, the saved state and rows only
    this worker writes."""
    state = ctx.load_state() or {"acc": np.zeros(4, dtype=np.int64)}
    w = ctx.worker_id
    stop = (ctx.data or {}).get("stop_at", ctx.iterations)
    while ctx.clock_count < stop:
        if ctx.clock_count == (ctx.data or {}).get("crash_at"):
            raise RuntimeError("injected crash")
        own = ctx.read("t", [2 + 2 * w, 3 + 2 * w])
        d = ctx.rng.integers(0, 7, size=(4, 3)) + (own.sum() % 3)
        ctx.inc("t", [0, 1, 2 + 2 * w, 3 + 2 * w], d)
        state["acc"] = state["acc"] + d.sum(axis=1)
        ctx.save_state(state)
        ctx.clock()
    return state["acc"].tolist()


TABLES = [ss.TableSpec("t", 6, 3, "int64")]
OPTS = dict(workers=2, iterations=10, consistency="bsp", seed=11, shards=2)


def test_resume_after_crash_matches_uninterrupted_run(tmp_path):
    reference = ss.run(det_worker, TABLES, **OPTS)
    with pytest.raises(RuntimeError, match="injected crash"):
        ss.run(det_worker, TABLES, data=[{}, {"crash_at": 8}], snapshot_every=3,
               snapshot_dir=str(tmp_path), **OPTS)
    assert [c for c, _ in list_snapshots(tmp_path)] == [3, 6]
    resumed = ss.run(det_worker, TABLES, resume=str(tmp_path), **OPTS)
    assert resumed.record["resumed_from_clock"] == 6
    np.testing.assert_array_equal(resumed.tables["t"], reference.tables["t"])
    assert resumed.worker_results == reference.worker_results
    assert sorted({r["iteration"] for r in resumed.record["records"]}) == list(range(10))
    # resuming an earlier snapshot explicitly gives the same end
    again = ss.run(det_worker, TABLES, resume=str(tmp_path / "snap-00000003"), **OPTS)
    np.testing.assert_array_equal(again.tables["t"], reference.tables["t"])


def test_snapshots_hold_exactly_the_clocks_before_them_under_ssp(tmp_path):
    """SSP lets fast workers run ahead; the barrier still gives tables of one clock."""
    scenario = Scenario(workers=4, iterations=9, rows=5, consistency="ssp", staleness=2,
                        shards=2, seed=3, max_delay_ms=2.0, slow_worker=1,
                        extra_options={"snapshot_every": 2, "snapshot_dir": str(tmp_path)})
    result, _, plan = run_scenario(scenario)
    assert result.record["snapshots_written"] == [2, 4, 6, 8]
    for clock, path in list_snapshots(tmp_path):
        snap = load_snapshot(path)
        np.testing.assert_array_equal(snap.tables[TABLE], plan[:, :clock].sum(axis=1).T)
        assert all(s.clock == clock and not s.finished for s in snap.workers)


@pytest.mark.parametrize("consistency", ["bsp", "ssp"])
def test_a_resumed_run_keeps_the_guarantee_on_rows_other_workers_write(tmp_path, consistency):
    """Crash one worker, resume from the last snapshot: every read after the restart still
    sees exactly the increments the guarantee promises (a shard restored a clock ahead or
    behind its workers fails here), and no increment is lost or applied twice."""
    common = dict(workers=3, iterations=12, rows=6, consistency=consistency, staleness=1,
                  shards=2, seed=5, max_delay_ms=1.0)
    crash = Scenario(**common, crash_at=(1, 9),
                     extra_options={"snapshot_every": 4, "snapshot_dir": str(tmp_path)})
    with pytest.raises(RuntimeError, match="injected crash"):
        run_scenario(crash)
    assert [c for c, _ in list_snapshots(tmp_path)] == [4, 8]
    resumed = Scenario(**common, extra_options={"resume": str(tmp_path)})
    result, logs, plan = run_scenario(resumed)
    assert result.record["resumed_from_clock"] == 8
    assert logs and min(log.clock for log in logs) == 8
    assert violations(resumed, logs, plan) == []
    assert exact_sum_violations(result, plan) == []


def test_worker_that_returns_early_does_not_block_snapshots(tmp_path):
    data = [{}, {"stop_at": 3}]
    reference = ss.run(det_worker, TABLES, data=data, **OPTS)
    run = ss.run(det_worker, TABLES, data=data, snapshot_every=2, snapshot_dir=str(tmp_path),
                 **OPTS)
    assert run.record["snapshots_written"] == [2, 4, 6, 8]
    snap = load_snapshot(tmp_path)
    assert snap.workers[1].finished and snap.workers[1].clock == 3
    resumed = ss.run(det_worker, TABLES, data=data, resume=str(tmp_path), **OPTS)
    np.testing.assert_array_equal(resumed.tables["t"], reference.tables["t"])
    assert resumed.worker_results[0] == reference.worker_results[0]
    assert resumed.worker_results[1] is None  # returned before the snapshot: not run again


def test_snapshot_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="needs snapshot_dir"):
        ss.run(det_worker, TABLES, snapshot_every=2, **OPTS)
    with pytest.raises(ConfigError, match="positive int"):
        ss.run(det_worker, TABLES, snapshot_every=0, snapshot_dir=str(tmp_path), **OPTS)
    ss.run(det_worker, TABLES, snapshot_every=4, snapshot_dir=str(tmp_path), **OPTS)
    with pytest.raises(ConfigError, match="already holds snapshots"):
        ss.run(det_worker, TABLES, snapshot_every=4, snapshot_dir=str(tmp_path), **OPTS)
    with pytest.raises(SnapshotError, match="the job has 3"):
        ss.run(det_worker, TABLES, resume=str(tmp_path), **{**OPTS, "workers": 3})


def test_cli_run_settings_reach_the_run_config():
    from stalesync.apps.base import RunConfig
    from stalesync.apps.lda.cli import COMMAND

    parser = build_parser()
    args = parser.parse_args(["lda", "--data", "nyt", "--runtime", "ray", "--snapshot-every",
                              "5", "--snapshot-dir", "snaps", "--resume", "snaps"])
    run = COMMAND.run_config(args)
    assert run == RunConfig(runtime="ray", snapshot_every=5, snapshot_dir="snaps",
                            resume="snaps", progress=True)
    assert run.job_options(0)["snapshot_every"] == 5
    assert "snapshot_every" not in RunConfig().job_options(0)
