"""The batched worker API, the run record and the plot."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

import stalesync as ss
from stalesync.faults import Stragglers
from stalesync.observe.metrics import RECORD_FIELDS
from stalesync.observe.plots import plot_run


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self, timeout=None):
        return self.value


class ZeroShard:
    """A shard link for one-column tables: serves zeros at stamp 0, accepts clocks."""

    last_answer = None

    def read(self, worker, table, local, required):
        return _Done((np.zeros((local.size, 1)), 0, 0.0, 0))

    def clock(self, *args, **kwargs):
        pass

    def sync(self):
        pass


def counting_worker(ctx):
    for k in range(ctx.iterations):
        before = ctx.read("t")
        ctx.inc("t", np.arange(6), np.full((6, 2), ctx.worker_id + 1, dtype=np.int64))
        after = ctx.read("t", np.arange(6))
        np.testing.assert_array_equal(after - before, ctx.worker_id + 1)  # read-my-writes
        ctx.clock(objective=float(k))
    return ctx.worker_id


def test_run_record_schema_and_values(tmp_path):
    out = tmp_path / "run.json"
    result = ss.run(
        counting_worker,
        [ss.TableSpec("t", 6, 2, "int64")],
        workers=3,
        consistency="ssp",
        staleness=2,
        iterations=4,
        metrics_out=str(out),
        app="counting",
        final=lambda r: {"total": int(r.tables["t"].sum())},
    )
    record = json.loads(out.read_text())
    assert set(record) == set(RECORD_FIELDS)
    assert record["app"] == "counting" and record["runtime"] == "embedded"
    assert record["strategy"] == "ps" and record["clocks"] == 4 and record["recoveries"] == 0
    assert (record["consistency"], record["staleness"], record["workers"]) == ("ssp", 2, 3)
    assert len(record["records"]) == 3 * 4
    assert {(r["iteration"], r["worker"]) for r in record["records"]} == {
        (i, w) for i in range(4) for w in range(3)
    }
    assert all(r["objective"] == r["iteration"] for r in record["records"])
    assert record["final"] == {"total": 6 * 2 * 4 * (1 + 2 + 3)}
    assert set(record["observed_staleness"]) >= {"max", "mean", "histogram"}
    assert record["observed_staleness"]["max"] <= 2
    assert record["bytes_sent"] > 0
    assert result.worker_results == [0, 1, 2]


def test_increments_are_sent_once_per_shard_per_clock():
    """Coalescing: many incs to the same rows cost one message per shard per clock."""

    def worker(ctx):
        for _ in range(100):
            ctx.inc("t", [0, 1], np.ones((2, 4)))
        ctx.clock()

    result = ss.run(worker, [ss.TableSpec("t", 10, 4)], workers=1, shards=2, iterations=1)
    # two rows (8-byte id + 4 float64) + one 32-byte header per shard
    assert result.record["bytes_sent"] == 2 * (8 + 32) + 2 * 32
    np.testing.assert_array_equal(result.tables["t"][:2], 100)


@pytest.mark.parametrize("shards", [1, 2])
def test_a_fresh_read_in_any_order_is_a_private_copy_with_own_writes(shards):
    """A BSP read that fetches every row it asks for returns the fetched array itself: it
    must hold the asked order, the reader's unsent increments, and not alias the cache."""
    order = np.array([5, 0, 3, 1])

    def worker(ctx):
        seen = []
        for _ in range(3):
            ctx.inc("t", [3], np.full((1, 2), 10.0))  # unsent when the next read fetches
            got = ctx.read("t", order)
            seen.append(got.copy())
            got[:] = -1  # the caller owns it: must not reach the cache
            assert ctx.read("t", order)[0, 0] != -1
            ctx.inc("t", order, np.ones((4, 2)))
            ctx.clock()
        return seen

    initial = np.arange(12.0).reshape(6, 2)
    result = ss.run(worker, [ss.TableSpec("t", 6, 2)], workers=1, shards=shards,
                    consistency="bsp", iterations=3, initial_tables={"t": initial})
    for k, got in enumerate(result.worker_results[0]):
        expected = initial[order] + k
        expected[2] += 10.0 * (k + 1)  # row 3 sits at position 2 of ``order``
        np.testing.assert_array_equal(got, expected)


def test_initial_tables_and_per_table_consistency():
    def worker(ctx):
        return ctx.read("a", [1])[0, 0], ctx.read("b", [1])[0, 0]

    a = ss.TableSpec("a", 3, 1, consistency="async")
    b = ss.TableSpec("b", 3, 1, consistency="ssp", staleness=4)
    result = ss.run(
        worker,
        [a, b],
        workers=2,
        consistency="bsp",
        initial_tables={"a": np.arange(3.0)[:, None], "b": np.ones((3, 1))},
    )
    assert result.worker_results == [(1.0, 1.0), (1.0, 1.0)]


def test_inc_one_and_scalar_read():
    def worker(ctx):
        ctx.inc_one("t", 2, 1, 5)
        return ctx.read("t", 2)

    result = ss.run(worker, [ss.TableSpec("t", 4, 3, "int32")], workers=1)
    np.testing.assert_array_equal(result.worker_results[0], [0, 5, 0])
    assert result.tables["t"][2, 1] == 5


def test_straggler_factor_slows_only_the_chosen_worker():
    def worker(ctx):
        for _ in range(5):
            time.sleep(0.004)  # "compute" that load on the machine cannot stretch unevenly
            ctx.clock()

    result = ss.run(
        worker,
        [ss.TableSpec("t", 1, 1)],
        workers=2,
        consistency="async",
        stragglers=Stragglers(slow={1: 3.0}),
    )
    dur = {
        w: np.median([r["duration_s"] for r in result.record["records"] if r["worker"] == w])
        for w in (0, 1)
    }
    assert dur[1] > 2.0 * dur[0]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("1:2.5", Stragglers(slow={1: 2.5})),
        ("0:2,p=0.1:0.02", Stragglers(slow={0: 2.0}, pause_prob=0.1, pause_s=0.02)),
    ],
)
def test_straggler_cli_syntax(text, expected):
    assert Stragglers.parse(text) == expected


def test_straggler_bad_syntax():
    with pytest.raises(ss.ConfigError, match="cannot parse straggler spec 'x'"):
        Stragglers.parse("x")


def test_plot_writes_a_png(tmp_path):
    result = ss.run(counting_worker, [ss.TableSpec("t", 6, 2, "int64")], workers=2, iterations=3)
    path = tmp_path / "run.png"
    plot_run(result.record, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _record(**extra):
    base = {"app": "x", "strategy": "ps", "consistency": "bsp", "staleness": 0,
            "runtime": "embedded", "workers": 1, "clocks": 3,
            "records": [{"iteration": i, "worker": 0, "time_s": 0.1 * i, "objective": 1.0 / (i + 1)}
                        for i in range(3)],
            "observed_staleness": {"histogram": [5, 2], "mean": 0.3}}
    return {**base, **extra}


@pytest.mark.parametrize("extra,panels", [
    ({}, ["_objective_panel", "_staleness_panel"]),
    # a scheduled job (Lasso) reads no tables: no empty staleness panel
    ({"strategy": "scheduled", "observed_staleness": {"histogram": [], "mean": 0.0}},
     ["_objective_panel"]),
    ({"final": {"train_accuracy": 0.91, "test_accuracy": 0.88}},
     ["_objective_panel", "_accuracy_panel", "_staleness_panel"]),
    ({"history": [{"epoch": e, "time_s": e, "train_rmse": 1.0 - e / 10, "test_rmse": 1.1}
                  for e in range(3)]},
     ["_objective_panel", "_rmse_panel", "_staleness_panel"]),
])
def test_a_run_plot_has_the_panels_its_record_has_data_for(tmp_path, extra, panels):
    from stalesync.observe.plots import run_panels

    record = _record(**extra)
    assert [p.func.__name__ for p in run_panels(record)] == panels
    plot_run(record, tmp_path / "run.png")
    assert (tmp_path / "run.png").read_bytes()[:4] == b"\x89PNG"


def test_pauses_can_be_limited_to_chosen_workers():
    stragglers = Stragglers(pause_prob=1.0, pause_s=0.01, pause_workers=(1,))
    assert stragglers.for_worker(0).extra_seconds(0.0) == 0.0
    assert stragglers.for_worker(1).extra_seconds(0.0) == 0.01


def test_straggler_stretches_compute_not_time_blocked_in_reads():
    """A slow worker's delay is (factor - 1) x its compute; waiting on others is not compute."""

    def worker(ctx):
        for _ in range(4):
            if ctx.worker_id == 0:
                time.sleep(0.03)  # worker 1 waits for this in its BSP read
            ctx.read("t", [0])
            time.sleep(0.002)
            ctx.clock()

    result = ss.run(worker, [ss.TableSpec("t", 1, 1)], workers=2, consistency="bsp",
                    stragglers=Stragglers(slow={1: 3.0}))
    slow = [r for r in result.record["records"] if r["worker"] == 1][1:]
    # compute ~2 ms -> ~4 ms extra; counting the ~30 ms wait would add ~60 ms
    assert all(r["duration_s"] - r["wait_s"] < 0.045 for r in slow), slow


def test_an_essp_push_older_than_the_sent_log_is_dropped_not_applied():
    """Read-my-writes against a very late push: a push made before the reader's last
    SENT_LOG_CLOCKS flushes cannot be completed with them, so it must be dropped (the
    cached row keeps the reader's own increments), never applied without them."""
    from stalesync.ps.client import SENT_LOG_CLOCKS, WorkerClient
    from stalesync.ps.clock_records import WorkerMetrics
    from stalesync.ps.consistency import ConsistencyModel
    from stalesync.ps.server import Push
    from stalesync.ps.tables import ShardMap

    spec = ss.TableSpec("t", 1, 1)
    client = WorkerClient(0, {"t": spec}, {"t": ConsistencyModel.parse("essp", 100)},
                          ShardMap(1), [ZeroShard()], WorkerMetrics(0, 0.0))
    client.read("t", [0])
    for _ in range(SENT_LOG_CLOCKS + 2):
        client.inc("t", [0], np.ones((1, 1)))
        client.clock()
    client.receive_push(Push("t", np.array([0]), np.zeros((1, 1)), stamp=1, own_clocks=0))
    assert client.read("t", [0])[0, 0] == SENT_LOG_CLOCKS + 2


def test_essp_pushes_leave_the_shard_lock_free_and_a_late_older_push_is_ignored():
    """A shard delivers pushes after releasing its lock (on Ray a push is serialised then),
    so pushes of two clocks can arrive out of order: the client keeps the newer rows."""
    import threading

    from stalesync.ps.client import WorkerClient
    from stalesync.ps.clock_records import WorkerMetrics
    from stalesync.ps.consistency import ConsistencyModel
    from stalesync.ps.server import Push, ServerShard
    from stalesync.ps.tables import ShardMap

    spec = ss.TableSpec("t", 4, 1)
    models = {"t": ConsistencyModel.parse("essp", 1)}
    delivered = []

    def sink(worker, push):
        took = []

        def other_member():  # another member's call on this shard must get in now
            if shard._cond.acquire(timeout=1.0):
                shard._cond.release()
                took.append(True)

        caller = threading.Thread(target=other_member)
        caller.start()
        caller.join()
        delivered.append((worker, push.stamp, bool(took)))

    shard = ServerShard(0, ShardMap(1), {"t": spec}, models, 2, push_sink=sink)
    shard.read(0, "t", np.arange(4), None)  # worker 0 subscribes to every row
    for clock in range(2):
        shard.clock(0, {"t": (np.array([1]), np.ones((1, 1)))}, step=clock)
        shard.clock(1, {}, step=clock)
    assert delivered and all(took for _, _, took in delivered)

    client = WorkerClient(0, {"t": spec}, models, ShardMap(1), [ZeroShard()], WorkerMetrics(0, 0.0))
    client.read("t", [0])
    client.receive_push(Push("t", np.array([0]), np.full((1, 1), 5.0), stamp=2, own_clocks=0))
    client.receive_push(Push("t", np.array([0]), np.full((1, 1), 3.0), stamp=1, own_clocks=0))
    assert client.read("t", [0])[0, 0] == 5.0


def test_every_estimator_path_keeps_only_a_record_of_the_one_schema():
    """An estimator keeps its run record through check_record: a path that drops a field or
    malforms one fails there, naming it, instead of writing a record `compare` cannot read."""
    from stalesync.errors import StalesyncError
    from stalesync.observe.metrics import check_record

    record = ss.run(lambda ctx: ctx.clock(), [ss.TableSpec("t", 2, 2)], workers=1).record
    assert check_record(record) is record
    with pytest.raises(StalesyncError, match=r"missing \['clocks'\]"):
        check_record({k: v for k, v in record.items() if k != "clocks"})
    with pytest.raises(StalesyncError, match=r"malformed \['final'\]"):
        check_record({**record, "final": None})
