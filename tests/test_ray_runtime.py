"""The Ray runtime: same guarantee as embedded, snapshots, resume and automatic recovery.

One Ray session (a ``ray.cluster_utils.Cluster`` with a head node) serves every test; the
multi-node test adds nodes to it and removes them again.
"""

from __future__ import annotations

import sys
import threading
import time
from unittest import mock

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import guarantee_checker as gc  # noqa: E402
from guarantee_checker import ReadLog, Scenario, exact_sum_violations, violations  # noqa: E402

import stalesync as ss  # noqa: E402
import stalesync.runtime.ray_backend as rb  # noqa: E402
from stalesync.errors import RecoveryError  # noqa: E402
from stalesync.persist.snapshot import list_snapshots, load_snapshot  # noqa: E402
from stalesync.runtime.ps import ParameterServer  # noqa: E402

pytestmark = pytest.mark.ray


# test functions and the checker live in modules Ray's worker processes cannot import
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
ray.cloudpickle.register_pickle_by_value(gc)


def test_shard_actor_applies_clocks_in_send_order_and_reads_wait_for_own_clocks():
    """A threaded actor may start calls out of order; the shard must not (no Ray needed)."""
    from stalesync.ps.consistency import ConsistencyModel
    from stalesync.runtime.members import ShardHost

    shard = ShardHost(0, 1, {"t": ss.TableSpec("t", 2, 1, "int64")},
                       {"t": ConsistencyModel.parse("ssp", 1)}, 2)
    applied = []
    real_clock = shard.shard.clock

    def spy(worker, updates, finished=False, step=None):
        applied.append(int(updates["t"][1][0, 0]))
        return real_clock(worker, updates, finished=finished, step=step)

    shard.shard.clock = spy
    inc = lambda v: {"t": (np.array([0]), np.array([[v]], dtype=np.int64))}  # noqa: E731
    got = {}
    second = threading.Thread(target=shard.clock, args=(0, inc(20), False, 1, 1), daemon=True)
    reader = threading.Thread(  # daemons: a failure here must not keep the process alive
        target=lambda: got.setdefault("read", shard.read(0, "t", np.array([0]), None, 2)),
        daemon=True)
    second.start()
    reader.start()
    time.sleep(0.1)
    assert applied == [] and "read" not in got  # both wait for clock #0
    shard.clock(0, inc(1), False, 0, 0)
    second.join(5)
    reader.join(5)
    assert applied == [1, 20]
    assert int(got["read"][0][0, 0]) == 21  # the read saw both of its own clocks


# -- a worker that logs every read, as the embedded checker does, and can be restored ----------
def probe_worker(scenario: Scenario, plan: np.ndarray, delays: np.ndarray):
    def worker(ctx: ss.WorkerContext):
        w = ctx.worker_id
        rng = np.random.default_rng([scenario.seed, w, 7, ctx.clock_count])
        mine = []
        while ctx.clock_count < scenario.iterations:
            k = ctx.clock_count
            time.sleep(delays[w, k])
            rows = np.unique(np.r_[0, rng.choice(scenario.rows, size=3)])
            mine.append((ctx.clock_count, rows, ctx.read(gc.TABLE, rows), False))
            inc_rows = np.flatnonzero(plan[w, k])
            deltas = np.zeros((inc_rows.size, scenario.workers), dtype=np.int64)
            deltas[:, w] = 1
            ctx.inc(gc.TABLE, inc_rows, deltas)
            mine.append((ctx.clock_count, rows, ctx.read(gc.TABLE, rows), True))
            ctx.clock()
        return mine

    return worker


def run_probe(scenario: Scenario, extra_tables=(), **options):
    plan = scenario.plan()
    result = ss.run(
        probe_worker(scenario, plan, scenario.delays()),
        [ss.TableSpec(gc.TABLE, scenario.rows, scenario.workers, "int64"), *extra_tables],
        workers=scenario.workers,
        consistency=scenario.consistency,
        staleness=None if scenario.consistency in ("bsp", "async") else scenario.staleness,
        iterations=scenario.iterations,
        shards=scenario.shards,
        seed=scenario.seed,
        runtime="ray",
        **options,
    )
    logs = [
        ReadLog(w, clock, rows, values, after)
        for w, mine in enumerate(result.worker_results)
        for clock, rows, values, after in mine or []
    ]
    return result, logs, plan


@pytest.mark.parametrize(
    "consistency,staleness,seed",
    [("bsp", 0, 1), ("ssp", 1, 2), ("essp", 2, 3), ("async", 0, 4)],
)
def test_guarantee_holds_on_ray(ray_cluster, consistency, staleness, seed):
    scenario = Scenario(workers=3, iterations=8, rows=5, consistency=consistency,
                        staleness=staleness, shards=2, seed=seed, max_delay_ms=3.0,
                        slow_worker=seed % 3)
    result, logs, plan = run_probe(scenario)
    assert len(logs) == 2 * scenario.workers * scenario.iterations
    assert violations(scenario, logs, plan) == []
    assert exact_sum_violations(result, plan) == []
    assert result.record["runtime"] == "ray"
    assert result.record["recoveries"] == 0
    if consistency != "async":
        bound = 0 if consistency == "bsp" else staleness
        assert result.record["observed_staleness"]["max"] <= bound


def test_progress_events_reach_on_clock_in_the_driver(ray_cluster):
    seen = []
    scenario = Scenario(workers=2, iterations=4, rows=3, consistency="ssp", staleness=1)
    run_probe(scenario, on_clock=lambda w, it, obj: seen.append((w, it)))
    assert sorted(seen) == [(w, it) for w in range(2) for it in range(4)]


def test_partitions_and_results_are_writable_as_on_embedded(ray_cluster):
    """Ray hands out read-only arrays; apps (e.g. LDA) update their partition in place."""

    def worker(ctx):
        z = ctx.data["z"]
        while ctx.clock_count < 3:
            z += 1  # in place
            ctx.inc("t", [0], z[:1, None].astype(np.float64))
            ctx.clock()
        return z

    data = [{"z": np.zeros(50_000, dtype=np.int32)} for _ in range(2)]  # object-store sized
    result = ss.run(worker, [ss.TableSpec("t", 1, 1)], data=data, runtime="ray", iterations=3)
    for z in result.worker_results:
        np.testing.assert_array_equal(z, 3)
        z[0] = 7  # the driver may keep working on the results
    assert result.tables["t"][0, 0] == 2 * (1 + 2 + 3)


def test_user_error_is_raised_not_retried(ray_cluster, tmp_path):
    def worker(ctx):
        while ctx.clock_count < 6:
            if ctx.worker_id == 1 and ctx.clock_count == 3:
                ctx.inc("t", [0], np.array([[np.nan]]))
            ctx.read("t", [0])
            ctx.inc("t", [0], np.ones((1, 1)))
            ctx.clock()

    with pytest.raises(ss.IncrementError, match="NaN") as caught:
        ss.run(worker, [ss.TableSpec("t", 1, 1)], workers=2, runtime="ray", iterations=6,
               snapshot_every=2, snapshot_dir=str(tmp_path))
    assert "stalesync: raised by worker 1 at clock 3" in getattr(caught.value, "__notes__", [])


# -- deterministic program for resume ----------------------------------------------------------
def det_worker(ctx: ss.WorkerContext):
    """BSP, seeded: what each worker adds depends on its rng, its saved state and its own
    rows (read-my-writes), so a correct resume reproduces the tables bit for bit."""
    state = ctx.load_state() or {"acc": np.zeros(4, dtype=np.int64)}
    w = ctx.worker_id
    while ctx.clock_count < ctx.iterations:
        if ctx.data and ctx.clock_count == ctx.data.get("crash_at"):
            raise RuntimeError("injected crash")
        own = ctx.read("t", [2 + 2 * w, 3 + 2 * w])  # only this worker adds to these
        d = ctx.rng.integers(0, 7, size=(4, 3)) + (own.sum() % 3)
        ctx.inc("t", [0, 1, 2 + 2 * w, 3 + 2 * w], d)
        state["acc"] += d.sum(axis=1)  # in place: restored arrays are writable
        ctx.save_state(state)
        ctx.clock()
    return state["acc"].tolist()


DET_TABLES = [ss.TableSpec("t", 6, 3, "int64")]
DET_OPTS = dict(workers=2, iterations=10, consistency="bsp", seed=11, shards=2)


def test_resume_after_crash_matches_uninterrupted_run(ray_cluster, tmp_path):
    reference = ss.run(det_worker, DET_TABLES, **DET_OPTS)  # embedded, uninterrupted
    crash = [{"crash_at": 8}, {}]
    with pytest.raises(RuntimeError, match="injected crash"):
        ss.run(det_worker, DET_TABLES, data=crash, runtime="ray", snapshot_every=3,
               snapshot_dir=str(tmp_path), **DET_OPTS)
    assert [c for c, _ in list_snapshots(tmp_path)] == [3, 6]
    resumed = ss.run(det_worker, DET_TABLES, data=[{}, {}], runtime="ray",
                     resume=str(tmp_path), **DET_OPTS)
    assert resumed.record["resumed_from_clock"] == 6
    np.testing.assert_array_equal(resumed.tables["t"], reference.tables["t"])
    assert resumed.worker_results == reference.worker_results
    # the history of clocks before the snapshot came back with it
    assert sorted({r["iteration"] for r in resumed.record["records"]}) == list(range(10))


# -- automatic recovery ------------------------------------------------------------------------
def _kill_once(role: str, index: int, at_iteration: int):
    """An on_clock hook (runs in the driver) that kills one actor the first time a worker
    reports ``at_iteration``."""
    done = threading.Event()

    def hook(worker: int, iteration: int, objective) -> None:
        if iteration >= at_iteration and not done.is_set():
            done.set()
            runtime = ParameterServer.active
            actors = runtime.worker_actors() if role == "worker" else runtime.shard_actors()
            ray.kill(actors[index], no_restart=True)
            hook.killed_at = time.time()
            hook.runtime = runtime

    return hook, done


@pytest.mark.parametrize("role,index", [("worker", 1), ("shard", 0)])
def test_killed_actor_is_recovered_from_snapshot(ray_cluster, tmp_path, role, index):
    scenario = Scenario(workers=3, iterations=40, rows=6, consistency="ssp", staleness=1,
                        shards=2, seed=5, max_delay_ms=40.0)
    hook, killed = _kill_once(role, index, at_iteration=5)
    t0 = time.perf_counter()
    result, logs, plan = run_probe(scenario, on_clock=hook, snapshot_every=4,
                                   snapshot_dir=str(tmp_path))
    assert killed.is_set()
    assert result.record["recoveries"] == 1
    detected = hook.runtime.recovery.failures_detected_at[0]
    assert detected - hook.killed_at < 5.0  # noticed in seconds
    assert result.record["recovered_from"][0] in range(4, 40, 4)
    assert exact_sum_violations(result, plan) == []  # nothing lost, nothing doubled
    assert violations(scenario, logs, plan) == []  # reads after the restart
    assert time.perf_counter() - t0 < 60


def test_recovery_without_snapshots_stops_with_clear_error(ray_cluster):
    scenario = Scenario(workers=2, iterations=60, rows=3, consistency="ssp", staleness=1,
                        max_delay_ms=30.0)
    hook, _ = _kill_once("worker", 0, at_iteration=2)
    with pytest.raises(RecoveryError, match="snapshots are off"):
        run_probe(scenario, on_clock=hook)


def test_repeated_failures_give_up_and_keep_the_snapshot(ray_cluster, tmp_path):
    kills = []

    def hook(worker, iteration, objective):  # kill a worker at every attempt's clock 5+
        runtime = ParameterServer.active
        attempt = runtime.recovery.recovered_from[:]
        if iteration >= 5 and attempt not in kills:
            kills.append(attempt)
            ray.kill(runtime.worker_actors()[0], no_restart=True)

    scenario = Scenario(workers=2, iterations=40, rows=3, consistency="ssp", staleness=1,
                        max_delay_ms=10.0)
    with pytest.raises(RecoveryError, match="giving up after 1 recoveries"):
        run_probe(scenario, on_clock=hook, snapshot_every=2, snapshot_dir=str(tmp_path),
                  max_recoveries=1)
    assert list_snapshots(tmp_path), "the last snapshot must survive"
    latest = load_snapshot(tmp_path)
    assert latest.clock >= 2
    # the snapshot is consistent: exactly the planned increments of clocks < its clock
    plan = scenario.plan()
    expected = plan[:, : latest.clock].sum(axis=1).T
    np.testing.assert_array_equal(latest.tables[gc.TABLE], expected)


def where_worker(ctx: ss.WorkerContext):
    """Increments row ``worker`` by 1 per clock; reports its process, node and links."""
    while ctx.clock_count < ctx.iterations:
        ctx.read("t", np.arange(4))
        ctx.inc("t", [ctx.worker_id], np.ones((1, 1), dtype=np.int64))
        ctx.clock()
    import os

    links = tuple(type(link).__name__ for link in ctx._client.shards)
    return os.getpid(), ray.get_runtime_context().get_node_id(), links


@pytest.fixture(scope="module")
def two_nodes(ray_cluster):
    """Two added nodes advertising ``node_slot``; removed after the module."""
    nodes = [ray_cluster.add_node(num_cpus=2, resources={"node_slot": 4}) for _ in range(2)]
    ray_cluster.wait_for_nodes()
    yield [n.node_id for n in nodes]
    for node in nodes:
        ray_cluster.remove_node(node)


ON_TWO_NODES = {"shard": {"resources": {"node_slot": 1}},
                "worker": {"resources": {"node_slot": 1}}}


def test_one_host_process_per_node(two_nodes):
    """4 workers and 2 shards on two nodes: one process per node holds that node's workers
    and shard; a worker reaches its own node's shard directly and the other through Ray;
    every increment arrives exactly once."""
    result = ss.run(where_worker, [ss.TableSpec("t", 4, 1, "int64")], workers=4, shards=2,
                    iterations=12, consistency="ssp", staleness=1, runtime="ray",
                    ray_options=ON_TWO_NODES)
    pids, nodes, links = zip(*result.worker_results, strict=True)
    assert set(nodes) == set(two_nodes)
    assert [nodes[0] == nodes[1], nodes[2] == nodes[3], nodes[0] != nodes[2]] == [True] * 3
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[0] != pids[2]
    # shard i lives with workers 2i, 2i + 1 (the shard map puts row r on shard r % 2)
    assert links[0] == links[1] == ("LocalShardLink", "ShardLink")
    assert links[2] == links[3] == ("ShardLink", "LocalShardLink")
    np.testing.assert_array_equal(result.tables["t"][:, 0], [12] * 4)


@pytest.mark.parametrize("consistency,staleness,seed", [("ssp", 1, 21), ("essp", 1, 22),
                                                         ("async", 0, 23)])
def test_guarantee_holds_across_two_nodes(two_nodes, consistency, staleness, seed):
    scenario = Scenario(workers=4, iterations=8, rows=6, consistency=consistency,
                        staleness=staleness, shards=2, seed=seed, max_delay_ms=3.0,
                        slow_worker=seed % 4)
    result, logs, plan = run_probe(scenario, ray_options=ON_TWO_NODES)
    assert violations(scenario, logs, plan) == []
    assert exact_sum_violations(result, plan) == []


def test_multi_node_placement_and_node_loss(ray_cluster, tmp_path):
    """Shards on one node, workers on two others; the node of worker 0 is removed mid-run
    (in the default suite: ~15 s; the soak repeats it at seeded clocks)."""
    node_loss_run(ray_cluster, tmp_path, seed=9, at_iteration=6)


def node_loss_run(ray_cluster, tmp_path, seed: int, at_iteration: int,
                  min_nodes: int = 1) -> dict:
    """One run on three added nodes; returns its recoveries (asserts the invariants). With
    ``min_nodes=2`` a node that can take the lost one's worker joins a second after the
    loss: the job waits for it instead of going on with one."""
    shard_node = ray_cluster.add_node(num_cpus=2, resources={"shard_slot": 4})
    worker_nodes = [ray_cluster.add_node(num_cpus=2, resources={"worker_slot": 2})
                    for _ in range(2)]
    ray_cluster.wait_for_nodes()
    nodes = [shard_node, *worker_nodes]  # removed after the run, but the one removed during it
    placement = {}
    removed = threading.Event()

    waited: list[int] = []  # qualifying nodes when a placement under the floor began
    placing = rb.eligible_nodes

    def eligible(role, cpus, options, wait=True, at_least=1):
        """The recovery's placement, on the driver's main thread (Ray adds nodes only
        there): when it finds too few nodes, a replacement starts; the real placement then
        waits until it is up."""
        if wait and at_least > 1 and removed.is_set() and not waited:
            waited.append(len(placing(role, cpus, options, wait=False)))
            nodes.append(ray_cluster.add_node(num_cpus=2, resources={"worker_slot": 2}))
        return placing(role, cpus, options, wait, at_least)

    def hook(worker, iteration, objective):
        runtime = ParameterServer.active
        if not placement:
            placement["shards"] = ray.get([a.ping.remote() for a in runtime.shard_actors()])
            placement["workers"] = ray.get([a.ping.remote() for a in runtime.worker_actors()])
        if iteration >= at_iteration and not removed.is_set():
            removed.set()
            victim = placement["workers"][0]
            node = next(n for n in worker_nodes if n.node_id == victim)
            ray_cluster.remove_node(node)
            nodes.remove(node)

    scenario = Scenario(workers=2, iterations=30, rows=6, consistency="ssp", staleness=1,
                        shards=2, seed=seed, max_delay_ms=15.0)
    opts = {"shard": {"resources": {"shard_slot": 1}},
            "worker": {"resources": {"worker_slot": 1}, "scheduling_strategy": "SPREAD"}}
    with mock.patch.object(rb, "eligible_nodes", eligible):
        result, logs, plan = probe_on_nodes(ray_cluster, nodes, scenario, hook, opts,
                                            tmp_path, min_nodes=min_nodes)
    assert set(placement["shards"]) == {shard_node.node_id}
    assert len(set(placement["workers"])) == 2
    assert shard_node.node_id not in placement["workers"]
    assert removed.is_set() and result.record["recoveries"] >= 1
    membership = result.record["membership"]
    assert membership[0]["nodes"] == 2 and membership[-1]["reason"] == "member lost"
    # min_nodes=1: no replacement awaited, the lost node's worker runs on the node left;
    # min_nodes=2: the job waited for the node that joined and ended on two again
    assert membership[-1]["nodes"] == min_nodes
    assert waited == ([1] if min_nodes > 1 else [])
    assert exact_sum_violations(result, plan) == []
    assert violations(scenario, logs, plan) == []
    return {"recoveries": result.record["recoveries"]}


def test_min_nodes_waits_for_a_node_after_a_loss(ray_cluster, tmp_path):
    node_loss_run(ray_cluster, tmp_path, seed=10, at_iteration=6, min_nodes=2)


def test_min_nodes_fails_in_one_line_when_too_few_nodes_qualify(ray_cluster, monkeypatch):
    """Below the floor a job waits (NODE_WAIT_S, shortened here) for nodes, then stops
    with a line saying what is missing; it never starts on fewer."""
    from stalesync.errors import ConfigError

    node = ray_cluster.add_node(num_cpus=2, resources={"lonely_slot": 4})
    ray_cluster.wait_for_nodes()
    monkeypatch.setattr(rb, "NODE_WAIT_S", 1.0)
    try:
        with pytest.raises(RecoveryError, match=r"workers need at least 2 nodes \(min_nodes\) "
                                                r"and 1 qualified for 1 s: start another node"):
            ss.run(det_worker, DET_TABLES, data=[{}, {}], runtime="ray", min_nodes=2,
                   ray_options={"worker": {"resources": {"lonely_slot": 1}}}, **DET_OPTS)
    finally:
        ray_cluster.remove_node(node)
    with pytest.raises(ConfigError, match="min_nodes"):
        ss.run(det_worker, DET_TABLES, runtime="ray", min_nodes=3, **DET_OPTS)  # 2 workers
    # the estimators pass it on: a parameter-server app and a scheduled one, on the one node
    from stalesync.apps.base import RunConfig
    from stalesync.apps.kmeans import KMeans
    from stalesync.apps.lasso import Lasso

    X = np.random.default_rng(0).normal(size=(200, 20))
    floor = len(rb.alive_nodes()) + 1  # one more than the cluster has now
    run = RunConfig(runtime="ray", min_nodes=floor)
    for fit in (lambda: KMeans(3, workers=floor, seed=0).fit(X, run=run),
                lambda: Lasso(alpha=0.1, workers=floor).fit(X, X[:, 0], run=run)):
        with pytest.raises(RecoveryError, match=rf"need at least {floor} nodes \(min_nodes\)"):
            fit()


def probe_on_nodes(ray_cluster, nodes: list, scenario: Scenario, hook, opts: dict, tmp_path,
                   **job):
    """The probe with snapshots every 3 clocks on added ``nodes`` (the hook may add more to
    the list), which are removed afterwards whatever happens."""
    try:
        return run_probe(scenario, on_clock=hook, ray_options=opts, snapshot_every=3,
                         snapshot_dir=str(tmp_path), **job)
    finally:
        for node in nodes:
            ray_cluster.remove_node(node)


@pytest.mark.slow
def test_a_node_that_joins_is_used_from_the_next_snapshot(ray_cluster, tmp_path):
    """Elastic growth: 4 workers start on the one node that qualifies; a second joins
    mid-run; the job stops after its next snapshot, spreads over both, and every planned
    increment arrives exactly once."""
    nodes = [ray_cluster.add_node(num_cpus=2, resources={"grow_slot": 4})]
    ray_cluster.wait_for_nodes()

    def hook(worker, iteration, objective):  # in the driver's poll: the workers go on
        if iteration >= 4 and len(nodes) == 1:
            nodes.append(ray_cluster.add_node(num_cpus=2, resources={"grow_slot": 4}))

    scenario = Scenario(workers=4, iterations=300, rows=6, consistency="ssp", staleness=1,
                        shards=2, seed=31, max_delay_ms=40.0)
    opts = {"shard": {"resources": {"grow_slot": 1}},
            "worker": {"resources": {"grow_slot": 1}}}
    result, logs, plan = probe_on_nodes(ray_cluster, nodes, scenario, hook, opts, tmp_path)
    membership = result.record["membership"]
    assert [m["nodes"] for m in membership] == [1, 2]
    assert membership[1]["reason"] == "node joined"
    assert membership[1]["from_clock"] % 3 == 0 and membership[1]["from_clock"] > 0
    assert result.record["recoveries"] == 0
    assert exact_sum_violations(result, plan) == []
    assert violations(scenario, logs, plan) == []


def test_a_job_refuses_a_cluster_other_than_the_one_this_process_is_connected_to(
        ray_cluster):
    """A process connected to one cluster ran a job given another one's address on the
    first without a word; now that is refused, naming both. The same cluster named through
    loopback (Ray reports the machine's address) is the one it is connected to."""
    from stalesync.errors import ConfigError

    host, port = ray_cluster.address.rsplit(":", 1)
    other = f"{host}:{int(port) + 1}"
    with pytest.raises(ConfigError, match=f"{other}.*already connected to the Ray cluster "
                                          f"at .*:{port}; pass that address") as info:
        ss.run(det_worker, DET_TABLES, data=[{}, {}], runtime="ray", address=other, **DET_OPTS)
    assert info.value.param == "address"
    reference = ss.run(det_worker, DET_TABLES, **DET_OPTS)
    for same in (f"127.0.0.1:{port}", ray_cluster.address, "auto"):
        result = ss.run(det_worker, DET_TABLES, data=[{}, {}], runtime="ray", address=same,
                        **DET_OPTS)
        assert np.array_equal(result.tables["t"], reference.tables["t"])
